/**
 * Plain descriptions of host objects (`Host.describe`, `Host.objects`, `Host.state`):
 * one info shape per object kind, built by the file of that object, deep-equal
 * comparable so atomicity tests can compare a whole host before and after.
 */

import type { AccessInfo, AccessObject } from "./access.ts";
import { accessInfo } from "./access.ts";
import type { HostObject } from "./context.ts";
import type { DeviceInfo, HostDevice } from "./device.ts";
import { deviceInfo } from "./device.ts";
import type { FaultQueueInfo, FaultQueueObject } from "./fault.ts";
import { faultQueueInfo } from "./fault.ts";
import type { HwptNested, HwptNestedInfo, HwptPaging, HwptPagingInfo } from "./hw-pagetable.ts";
import { hwptNestedInfo, hwptPagingInfo } from "./hw-pagetable.ts";
import type { Ioas, IoasInfo } from "./ioas.ts";
import { ioasInfo } from "./ioas.ts";
import type { VdeviceInfo, VdeviceObject } from "./vdevice.ts";
import { vdeviceInfo } from "./vdevice.ts";
import type { VeventqInfo, VeventqObject } from "./veventq.ts";
import type { ViommuInfo, ViommuObject } from "./viommu.ts";
import { viommuInfo } from "./viommu.ts";

/** A plain, deep-equal comparable description of one object, by kind. */
export type ObjectInfo =
  | DeviceInfo
  | IoasInfo
  | HwptPagingInfo
  | HwptNestedInfo
  | AccessInfo
  | FaultQueueInfo
  | ViommuInfo
  | VdeviceInfo
  | VeventqInfo;

/** The plain description of any object. */
export function describeObject(o: HostObject): ObjectInfo {
  switch (o.kind) {
    case "device":
      return deviceInfo(o as HostDevice);
    case "ioas":
      return ioasInfo(o as Ioas);
    case "hwpt-paging":
      return hwptPagingInfo(o as HwptPaging);
    case "hwpt-nested":
      return hwptNestedInfo(o as HwptNested);
    case "access":
      return accessInfo(o as AccessObject);
    case "fault":
      return faultQueueInfo(o as FaultQueueObject);
    case "viommu":
      return viommuInfo(o as ViommuObject);
    case "vdevice":
      return vdeviceInfo(o as VdeviceObject);
    case "veventq":
      return (o as VeventqObject).info();
  }
}

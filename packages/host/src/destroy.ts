/**
 * IOMMU_DESTROY (iommufd_destroy): one rule per object kind, each in the file of its
 * object; EBUSY while something holds the object (see `Host.destroy`), ENOENT for an
 * unknown id. Every refusal comes before any change.
 */

import { IommuError } from "@iommu-kit/core";
import type { HostCtx } from "./context.ts";
import type { HostDevice } from "./device.ts";
import { destroyDevice } from "./device.ts";
import type { FaultQueueObject } from "./fault.ts";
import type { HwptNested, HwptPaging } from "./hw-pagetable.ts";
import { destroyFaultQueue, destroyHwptNested, destroyHwptPaging } from "./hw-pagetable.ts";
import type { Ioas } from "./ioas.ts";
import { destroyIoas } from "./ioas.ts";
import type { VdeviceObject } from "./vdevice.ts";
import { destroyVdevice } from "./vdevice.ts";
import type { VeventqObject } from "./veventq.ts";
import { destroyVeventq } from "./veventq.ts";
import type { ViommuObject } from "./viommu.ts";
import { destroyViommu } from "./viommu.ts";

/** Destroys object `id` of any kind. */
export function destroyObject(ctx: HostCtx, id: number): void {
  const o = ctx.objects.get(id);
  const busy = (why: string): never => {
    throw new IommuError("EBUSY", `object ${id} (${o.kind}) is busy: ${why}`, { id });
  };
  switch (o.kind) {
    case "device":
      destroyDevice(ctx, o as HostDevice, busy);
      break;
    case "ioas":
      destroyIoas(ctx, o as Ioas, busy);
      break;
    case "hwpt-paging":
      destroyHwptPaging(ctx, o as HwptPaging, busy);
      break;
    case "hwpt-nested":
      destroyHwptNested(ctx, o as HwptNested, busy);
      break;
    case "access":
      busy("detach the device instead");
      break;
    case "fault":
      destroyFaultQueue(ctx, o as FaultQueueObject, busy);
      break;
    case "viommu":
      destroyViommu(ctx, o as ViommuObject, busy);
      break;
    case "vdevice":
      destroyVdevice(ctx, o as VdeviceObject);
      break;
    case "veventq":
      destroyVeventq(ctx, o as VeventqObject);
      break;
  }
}

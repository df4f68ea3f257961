/**
 * The narrow host surface the scenario runner drives. `createScenarioHost` builds it
 * over the package's `Host` facade; keeping the runner on this interface keeps every
 * call into the object model in one file.
 */

import type {
  AttachIntent,
  CacheCounters,
  DomainFlags,
  FaultClass,
  IovaRange,
  VendorFault,
} from "@iommu-kit/core";

/** A capability table row. */
export interface CapRow {
  readonly device: string;
  readonly iommu: string;
  readonly backend: string;
  readonly rid: number;
  readonly intents: readonly string[];
  readonly maxPasidLog2: number;
  readonly pasidAssignment: string;
  readonly inputAddressBits: number;
  readonly outputAddressBits: number;
  readonly formats: readonly string[];
  readonly flags: readonly string[];
  readonly nesting: boolean;
  readonly hwInfo: string;
}

/** A vIOMMU as `caps` and `dump` show it, by scenario names. */
export interface ViommuRow {
  readonly viommu: string;
  readonly type: string;
  readonly iommu: string;
  /** The nest-parent HWPT it holds. */
  readonly hwpt: string;
  /** The backend's ids ({ vmid } on SMMUv3). */
  readonly vendor: Readonly<Record<string, number | string | boolean>>;
  readonly vdevices: ReadonlyArray<{
    readonly vdevice: string;
    readonly device: string;
    readonly virtId: number;
  }>;
  readonly veventqs: ReadonlyArray<{
    readonly veventq: string;
    readonly type: string;
    readonly depth: number;
    readonly pending: number;
  }>;
}

/** A fault as the host delivers it. */
export interface HostFault {
  readonly class: FaultClass;
  readonly recorded: boolean;
  readonly vendor: VendorFault;
  readonly [k: string]: unknown;
}

/** A DMA's outcome as the adapter returns it (a held page request: `pending`, `cookie`). */
export type HostDmaResult =
  | { ok: true; pa: number; data?: Uint8Array }
  | { ok: false; fault: HostFault; pending?: boolean; cookie?: number };

/** What the scenario runner needs of a host. */
export interface HostAdapter {
  /** Host id of a scenario device name. */
  deviceId(name: string): number;
  /** Tells the host the scenario's name (`as`) of object `id`. */
  nameObject?(id: number, name: string): void;
  capTable(): CapRow[];
  counters(): Record<string, CacheCounters>;
  ioasAlloc(): number;
  ioasMap(ioas: number, a: { iova: number | undefined; length: number; pa: number; prot: number }): number;
  ioasUnmap(ioas: number, iova: number, length: number): number;
  ioasUnmapAll(ioas: number): number;
  ioasCopy(a: {
    src: number;
    srcIova: number;
    dst: number;
    dstIova: number | undefined;
    length: number;
    prot: number;
  }): number;
  ioasIovaRanges(ioas: number): { ranges: readonly IovaRange[]; alignment: number };
  ioasAllowIovas(ioas: number, ranges: readonly IovaRange[]): void;
  hwptAlloc(a: {
    device: number;
    pt: number;
    flags: DomainFlags;
    data: unknown;
    faultQueue?: number | undefined;
  }): number;
  viommuAlloc(a: { device: number; hwpt: number; type: string }): number;
  vdeviceAlloc(a: { viommu: number; device: number; virtId: number }): number;
  veventqAlloc(a: { viommu: number; type: string; depth: number }): number;
  veventqRead(
    id: number,
    max: number | undefined,
  ): Array<{ flags: number; sequence: number; data: Uint8Array }>;
  faultQueueAlloc(): number;
  /** Page requests read from a fault queue (devId as the device's scenario name). */
  faultQueueRead(id: number, max: number | undefined): Array<Record<string, unknown>>;
  faultRespond(id: number, cookie: number, code: "success" | "invalid"): HostDmaResult[];
  attach(device: number, intent: AttachIntent, pt: number): { hwpt: number; pasid?: number };
  replace(device: number, intent: AttachIntent, pt: number): { hwpt: number; pasid?: number };
  detach(device: number, intent: AttachIntent): void;
  hwInfo(device: number): Record<string, unknown>;
  dma(
    device: number,
    a: {
      pasid: number | undefined;
      iova: number;
      access: "read" | "write" | "exec";
      priv: boolean;
      length: number;
      data: Uint8Array | undefined;
    },
  ): HostDmaResult;
  faultsRead(device: number | undefined): HostFault[];
  invalidate(hwpt: number, entries: readonly unknown[]): number;
  dirtySet(hwpt: number, enable: boolean): void;
  dirtyRead(hwpt: number, iova: number, length: number, pageSize: number, noClear: boolean): Uint8Array;
  accessPin(device: number, iova: number, length: number, write: boolean): readonly number[];
  accessUnpin(device: number, iova: number, length: number): void;
  accessRead(device: number, iova: number, length: number): Uint8Array;
  accessWrite(device: number, iova: number, data: Uint8Array): void;
  memWrite(pa: number, data: Uint8Array): void;
  memRead(pa: number, length: number): Uint8Array;
  destroy(id: number): void;
}

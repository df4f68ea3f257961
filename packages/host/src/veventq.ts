/**
 * vEVENTQ objects, after iommufd's eventq.c and driver.c (Linux 6.15
 * iommufd_veventq_alloc, iommufd_viommu_report_event, iommufd_vevent_handler,
 * iommufd_veventq_fops_read): the guest-visible events of one vIOMMU and one type (the
 * SMMUv3 32-byte event record with the vSID in place of the StreamID), bounded by
 * `depth`. Each queued record gets the queue's next sequence number
 * (`sequence = (sequence + 1) & INT_MAX`: it wraps at 2^31). When `depth` records are
 * waiting, a new event is lost: the one lost_events_header (flags
 * IOMMU_VEVENTQ_FLAG_LOST_EVENTS, no data) is (re)queued at the tail with the next
 * sequence number, so a reader sees a gap in the numbers and one LOST_EVENTS record
 * after the last record that was kept. A read drains records in order.
 *
 * A vEVENTQ holds its vIOMMU (`refcount_inc(&viommu->obj.users)`); it is registered
 * as the vIOMMU's event sink of its type (`Viommu.setEventSink`).
 */

import { IommuError } from "@iommu-kit/core";
import type { HostCtx, HostObject } from "./context.ts";
import type { ViommuObject } from "./viommu.ts";
import { getViommu } from "./viommu.ts";

/** IOMMU_VEVENTQ_FLAG_LOST_EVENTS. */
export const VEVENTQ_FLAG_LOST_EVENTS = 1;
/** INT_MAX: sequence numbers run 0 .. 2^31 - 1 and wrap (iommufd_vevent_handler). */
const SEQUENCE_MASK = 0x7fff_ffff;
/** veventq_depth is a __u32. */
const MAX_DEPTH = 2 ** 32 - 1;
/** IOMMU_VEVENTQ_TYPE_* names a queue may have (IOMMU_VEVENTQ_TYPE_DEFAULT is not one). */
export const VEVENTQ_TYPES: readonly string[] = ["arm-smmuv3", "selftest", "tegra241-cmdqv"];

/** IOMMU_VEVENTQ_ALLOC arguments. */
export interface VeventqAllocOptions {
  readonly viommu: number;
  /** IOMMU_VEVENTQ_TYPE_* by name: "arm-smmuv3", "selftest". */
  readonly type: string;
  /** veventq_depth: the most records kept unread. */
  readonly depth: number;
}

/** One record read from a vEVENTQ: struct iommufd_vevent_header + the event data. */
export interface VeventRecord {
  /** IOMMU_VEVENTQ_FLAG_LOST_EVENTS (1) for the lost-events record, else 0. */
  readonly flags: number;
  /** The header's sequence number (0 .. 2^31 - 1, wraps). */
  readonly sequence: number;
  /** The event as the guest reads it (empty for the lost-events record). */
  readonly data: Uint8Array;
}

/** `Host.describe` of a vEVENTQ. */
export interface VeventqInfo {
  readonly id: number;
  readonly kind: "veventq";
  readonly viommu: number;
  readonly type: string;
  readonly depth: number;
  /** Records waiting (num_events; the lost-events record not counted). */
  readonly pending: number;
  /** The lost-events record is queued. */
  readonly lost: boolean;
  /** The sequence number the next record gets. */
  readonly sequence: number;
}

/** A vEVENTQ (IOMMUFD_OBJ_VEVENTQ; struct iommufd_veventq). */
export class VeventqObject implements HostObject {
  readonly kind = "veventq" as const;
  readonly id: number;
  readonly viommu: ViommuObject;
  readonly type: string;
  readonly depth: number;
  /** eventq->deliver: records in order; the lost-events record at most once. */
  readonly #deliver: VeventRecord[] = [];
  /** num_events. */
  #numEvents = 0;
  /** Index of the lost-events record in `#deliver`, or -1. */
  #lostAt = -1;
  #sequence = 0;

  /** `sequence`: @internal the first sequence number (0, as kzalloc leaves it; tests start near the wrap). */
  constructor(id: number, viommu: ViommuObject, type: string, depth: number, sequence = 0) {
    this.id = id;
    this.viommu = viommu;
    this.type = type;
    this.depth = depth;
    this.#sequence = sequence & SEQUENCE_MASK;
  }

  /**
   * iommufd_viommu_report_event + iommufd_vevent_handler: queues a copy of `data` with
   * the next sequence number, or, with `depth` records waiting, (re)queues the
   * lost-events record at the tail (6.15 deletes it first only when it is last; moving
   * it from the middle is the model's list_move_tail where the kernel would add it twice).
   */
  report(data: Uint8Array): void {
    let rec: VeventRecord;
    if (this.#numEvents === this.depth) {
      rec = { flags: VEVENTQ_FLAG_LOST_EVENTS, sequence: this.#sequence, data: new Uint8Array(0) };
      if (this.#lostAt >= 0) this.#deliver.splice(this.#lostAt, 1);
      this.#lostAt = this.#deliver.length;
    } else {
      if (this.#lostAt === this.#deliver.length - 1 && this.#lostAt >= 0) {
        // "Remove the lost_events_header and add the new node at the same time."
        this.#deliver.pop();
        this.#lostAt = -1;
      }
      rec = { flags: 0, sequence: this.#sequence, data: data.slice() };
      this.#numEvents++;
    }
    this.#deliver.push(rec);
    this.#sequence = (this.#sequence + 1) & SEQUENCE_MASK;
  }

  /** iommufd_veventq_fops_read: up to `max` records (all when omitted), oldest first. */
  read(max: number = Number.POSITIVE_INFINITY): VeventRecord[] {
    const n = Math.min(max, this.#deliver.length);
    const out = this.#deliver.splice(0, n);
    if (this.#lostAt >= 0) this.#lostAt = this.#lostAt < n ? -1 : this.#lostAt - n;
    for (const r of out) if (r.flags === 0) this.#numEvents--;
    return out;
  }

  /** The plain description. */
  info(): VeventqInfo {
    return {
      id: this.id,
      kind: this.kind,
      viommu: this.viommu.id,
      type: this.type,
      depth: this.depth,
      pending: this.#numEvents,
      lost: this.#lostAt >= 0,
      sequence: this.#sequence,
    };
  }
}

/** The vEVENTQ `id`; ENOENT otherwise. */
export function getVeventq(ctx: HostCtx, id: number): VeventqObject {
  return ctx.objects.get(id, "veventq") as VeventqObject;
}

/**
 * IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc, in its order): IOMMU_VEVENTQ_TYPE_DEFAULT
 * is EOPNOTSUPP, and so is a name that is no IOMMU_VEVENTQ_TYPE_* (it has no number to
 * pass; 6.15 takes any other __u32); depth 0 is EINVAL (and so is one that is no __u32);
 * ENOENT for an unknown vIOMMU; EEXIST when it has a vEVENTQ of that type. The queue
 * becomes the vIOMMU's event sink of its type.
 */
export function veventqAlloc(ctx: HostCtx, opts: VeventqAllocOptions): number {
  const type = opts.type;
  if (typeof type !== "string" || !VEVENTQ_TYPES.includes(type))
    throw new IommuError("EOPNOTSUPP", `vEVENTQ type ${JSON.stringify(type)} is not supported`);
  const depth = opts.depth;
  if (!Number.isInteger(depth) || depth <= 0 || depth > MAX_DEPTH)
    throw new IommuError("EINVAL", `vEVENTQ depth ${depth} is not in [1, 2^32 - 1]`, {
      depth: String(depth),
    });
  const v = getViommu(ctx, opts.viommu);
  if (v.veventqs.has(type))
    throw new IommuError("EEXIST", `vIOMMU ${v.id} has a ${type} vEVENTQ (${v.veventqs.get(type)!.id})`, {
      viommu: v.id,
    });
  const objects = ctx.objects;
  objects.reserve("veventq");
  const q = new VeventqObject(objects.nextId, v, type, depth);
  const counter = ctx.vevents;
  v.viommu.setEventSink(type, (e) => {
    counter.reported++;
    q.report(e.data);
  });
  objects.insert(q);
  v.veventqs.set(type, q);
  return q.id;
}

/**
 * Reads vEVENTQ `id` (ENOENT otherwise): at most `max` records (0 reads nothing, as a
 * zero-byte read of iommufd_veventq_fops_read); EINVAL for a `max` that is not a
 * non-negative integer.
 */
export function veventqRead(ctx: HostCtx, id: number, max?: number): VeventRecord[] {
  const q = getVeventq(ctx, id);
  if (max !== undefined && (!Number.isInteger(max) || max < 0))
    throw new IommuError("EINVAL", `read count ${max} is not a non-negative integer`);
  return q.read(max);
}

/** IOMMU_DESTROY of a vEVENTQ (iommufd_veventq_destroy): unqueued records are dropped, the vIOMMU released. */
export function destroyVeventq(ctx: HostCtx, q: VeventqObject): void {
  q.viommu.viommu.setEventSink(q.type, null);
  q.viommu.veventqs.delete(q.type);
  ctx.objects.remove(q.id);
}

/**
 * The file side of iommufd's event queues (drivers/iommu/iommufd/eventq.c, Linux 6.15):
 * what read(2), write(2) and poll(2) on the descriptor of a FAULT object
 * (IOMMU_FAULT_QUEUE_ALLOC) or a vEVENTQ (IOMMU_VEVENTQ_ALLOC) do, byte for byte.
 *
 * - FAULT (iommufd_fault_fops_read / _write): reads hand out whole groups of
 *   struct iommu_hwpt_pgfault (40 bytes) and give each group a cookie at read time
 *   (xa_alloc on an XA_FLAGS_ALLOC1 xarray: the lowest free id from 1); writes take
 *   struct iommu_hwpt_page_response (8 bytes) and answer the group of that cookie.
 * - vEVENTQ (iommufd_veventq_fops_read): struct iommufd_vevent_header {flags, sequence}
 *   followed by the event's data; a record that does not fit ends the read.
 * - poll (iommufd_eventq_fops_poll): EPOLLIN | EPOLLRDNORM when something is queued,
 *   plus EPOLLOUT always for a FAULT.
 *
 * Where the records come from is the caller's: a {@link FaultFile} is fed groups
 * (`inject`) and may pull more from a source; a {@link VeventqFile} pulls records one
 * at a time from its source and keeps one it could not hand out (the kernel puts it back
 * at the head of its list: iommufd_veventq_deliver_restore).
 */

import { IommuError } from "@iommu-kit/core";
import {
  PAGE_RESP_INVALID,
  PAGE_RESP_SUCCESS,
  PAGE_RESPONSE_SIZE,
  PGFAULT_SIZE,
  VEVENT_HEADER_SIZE,
  VEVENTQ_FLAG_LOST_EVENTS,
} from "./layout.ts";
import type { UserMemory } from "./types.ts";

/** poll(2) bits (include/uapi/asm-generic/poll.h). */
export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLRDNORM = 0x40;

/** One fault of a group, as iommufd_compose_fault_message fills struct iommu_hwpt_pgfault. */
export interface PageFault {
  /** IOMMU_PGFAULT_FLAGS_PASID_VALID | _LAST_PAGE. */
  readonly flags: number;
  /** The iommufd id of the device. */
  readonly devId: number;
  readonly pasid: number;
  readonly grpid: number;
  /** IOMMU_PGFAULT_PERM_READ 1, WRITE 2, EXEC 4, PRIV 8. */
  readonly perm: number;
  readonly addr: bigint;
}

/** A group of page requests (struct iopf_group) waiting for user space. */
export interface PageFaultGroup {
  readonly faults: readonly PageFault[];
  /** iopf_group_response with IOMMUFD_PAGE_RESP_SUCCESS (0) or _INVALID (1). */
  respond(code: number): void;
}

/** One vEVENT as the source gives it: the header's fields and the data that follows. */
export interface VeventSourceRecord {
  readonly flags: number;
  readonly sequence: number;
  readonly data: Uint8Array;
}

/**
 * Where a descriptor's records come from besides what is injected: `pending` says
 * whether one is waiting (poll), `pull` takes the oldest (read), so a record leaves its
 * source only when a read hands it out.
 */
export interface EventSource<T> {
  pending(): boolean;
  pull(): T | undefined;
}

/** Copies `bytes` to the reader's buffer at `offset` (copy_to_user); throws EFAULT. */
export type CopyOut = (offset: number, bytes: Uint8Array) => void;
/** Copies `length` bytes of the writer's buffer at `offset` (copy_from_user); throws EFAULT. */
export type CopyIn = (offset: number, length: number) => Uint8Array;

function isEfault(e: unknown): boolean {
  return e instanceof IommuError && e.code === "EFAULT";
}

/** struct iommu_hwpt_pgfault, little-endian; `length` is always 0 (iommufd_compose_fault_message). */
export function encodePgfault(f: PageFault, cookie: number): Uint8Array {
  const v = new DataView(new ArrayBuffer(PGFAULT_SIZE));
  v.setUint32(0, f.flags, true);
  v.setUint32(4, f.devId, true);
  v.setUint32(8, f.pasid, true);
  v.setUint32(12, f.grpid, true);
  v.setUint32(16, f.perm, true);
  // __reserved (20) stays 0
  v.setBigUint64(24, f.addr, true);
  v.setUint32(32, 0, true);
  v.setUint32(36, cookie, true);
  return new Uint8Array(v.buffer);
}

/** The descriptor of one FAULT object. */
export class FaultFile {
  /** fault->common.deliver: groups not read yet, oldest first. */
  readonly deliver: PageFaultGroup[] = [];
  /** fault->response: groups read and not answered, by cookie. */
  readonly response: Map<number, PageFaultGroup> = new Map();
  readonly #src: EventSource<PageFaultGroup> | undefined;

  constructor(source?: EventSource<PageFaultGroup>) {
    this.#src = source;
  }

  /** iommufd_fault_iopf_handler: a group joins the tail of the deliver list. */
  inject(group: PageFaultGroup): void {
    this.deliver.push(group);
  }

  /** The head of the deliver list, taken from the source when the list is empty. */
  #head(): PageFaultGroup | undefined {
    if (this.deliver.length === 0) {
      const g = this.#src?.pull();
      if (g !== undefined) this.deliver.push(g);
    }
    return this.deliver[0];
  }

  /** xa_alloc(..., xa_limit_32b) on XA_FLAGS_ALLOC1: the lowest free index from 1. */
  #cookie(): number {
    let c = 1;
    while (this.response.has(c)) c++;
    return c;
  }

  /**
   * iommufd_fault_fops_read: `count` not a multiple of 40 is ESPIPE; whole groups only
   * (a group that does not fit stays queued and ends the read); a copy that faults puts
   * the group back and is EFAULT when nothing was read. Returns the bytes read.
   */
  read(count: number, out: CopyOut): number {
    if (count % PGFAULT_SIZE !== 0)
      throw new IommuError("ESPIPE", `read of ${count} bytes is not whole records`);
    let done = 0;
    let err: IommuError | null = null;
    for (;;) {
      if (done >= count) break;
      const group = this.#head();
      if (group === undefined) break;
      if (group.faults.length * PGFAULT_SIZE > count - done) break;
      this.deliver.shift();
      const cookie = this.#cookie();
      this.response.set(cookie, group);
      let faulted = false;
      for (const f of group.faults) {
        try {
          out(done, encodePgfault(f, cookie));
        } catch (e) {
          if (!isEfault(e)) throw e;
          this.response.delete(cookie);
          this.deliver.unshift(group);
          err = e as IommuError;
          faulted = true;
          break;
        }
        done += PGFAULT_SIZE;
      }
      if (faulted) break;
    }
    if (done === 0 && err !== null) throw err;
    return done;
  }

  /**
   * iommufd_fault_fops_write: `count` not a multiple of 8 is ESPIPE; each response's code
   * must be SUCCESS or INVALID and its cookie a group that was read (EINVAL); responses
   * before a bad one are answered and counted. A response that cannot be copied stops
   * the loop and, with nothing done, the kernel returns copy_from_user's count of bytes
   * not copied (8: a positive value, not -EFAULT).
   */
  write(count: number, input: CopyIn): number {
    if (count % PAGE_RESPONSE_SIZE !== 0)
      throw new IommuError("ESPIPE", `write of ${count} bytes is not whole responses`);
    let done = 0;
    while (count > done) {
      let b: Uint8Array;
      try {
        b = input(done, PAGE_RESPONSE_SIZE);
      } catch (e) {
        if (!isEfault(e)) throw e;
        return done === 0 ? PAGE_RESPONSE_SIZE : done;
      }
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const cookie = v.getUint32(0, true);
      const code = v.getUint32(4, true);
      let bad: string | null = null;
      if (code !== PAGE_RESP_SUCCESS && code !== PAGE_RESP_INVALID) bad = `response code ${code}`;
      else if (!this.response.has(cookie)) bad = `no fault group with cookie ${cookie}`;
      if (bad !== null) {
        if (done === 0) throw new IommuError("EINVAL", bad);
        return done;
      }
      const group = this.response.get(cookie)!;
      this.response.delete(cookie);
      try {
        group.respond(code);
      } catch (e) {
        // The source already answered the group (the host's auto-response on detach):
        // as a cookie xa_erase no longer finds.
        if (!(e instanceof IommuError)) throw e;
        if (done === 0) throw new IommuError("EINVAL", `fault group ${cookie} was already answered`);
        return done;
      }
      done += PAGE_RESPONSE_SIZE;
    }
    return done;
  }

  /** iommufd_eventq_fops_poll of a FAULT: EPOLLOUT, and EPOLLIN | EPOLLRDNORM when a group is queued. */
  poll(): number {
    const queued = this.deliver.length > 0 || this.#src?.pending() === true;
    return EPOLLOUT | (queued ? EPOLLIN | EPOLLRDNORM : 0);
  }

  /**
   * iommufd_fault_destroy: every group, read or not, is answered INVALID. A group whose
   * source is already gone (the host answered it when it destroyed its queue) is skipped.
   */
  release(): void {
    const all = [...this.deliver.splice(0), ...this.response.values()];
    this.response.clear();
    for (const g of all) {
      try {
        g.respond(PAGE_RESP_INVALID);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
  }
}

/** The descriptor of one vEVENTQ. */
export class VeventqFile {
  /** A record taken from the source and put back (the head of the kernel's deliver list). */
  readonly #held: VeventSourceRecord[] = [];
  readonly #src: EventSource<VeventSourceRecord>;

  constructor(source: EventSource<VeventSourceRecord>) {
    this.#src = source;
  }

  #fetch(): VeventSourceRecord | undefined {
    return this.#held.shift() ?? this.#src.pull();
  }

  /**
   * iommufd_veventq_fops_read: records in order, each an 8-byte header and its data; a
   * record whose header (or, but for a LOST_EVENTS header, header and data) does not fit
   * in what is left ends the read and stays queued, so a buffer too small for the first
   * record reads 0 bytes. A copy that faults keeps the record and is EFAULT when nothing
   * was read.
   */
  read(count: number, out: CopyOut): number {
    let done = 0;
    let err: IommuError | null = null;
    for (;;) {
      const cur = this.#fetch();
      if (cur === undefined) break;
      const lost = (cur.flags & VEVENTQ_FLAG_LOST_EVENTS) !== 0;
      if (
        done >= count ||
        VEVENT_HEADER_SIZE > count - done ||
        (!lost && VEVENT_HEADER_SIZE + cur.data.length > count - done)
      ) {
        this.#held.unshift(cur);
        break;
      }
      const h = new DataView(new ArrayBuffer(VEVENT_HEADER_SIZE));
      h.setUint32(0, cur.flags, true);
      h.setUint32(4, cur.sequence, true);
      try {
        out(done, new Uint8Array(h.buffer));
        if (cur.data.length > 0) out(done + VEVENT_HEADER_SIZE, cur.data);
      } catch (e) {
        if (!isEfault(e)) throw e;
        this.#held.unshift(cur);
        err = e as IommuError;
        break;
      }
      done += VEVENT_HEADER_SIZE + cur.data.length;
    }
    if (done === 0 && err !== null) throw err;
    return done;
  }

  /** iommufd_eventq_fops_poll of a vEVENTQ: EPOLLIN | EPOLLRDNORM when a record is queued (no EPOLLOUT). */
  poll(): number {
    return this.#held.length > 0 || this.#src.pending() ? EPOLLIN | EPOLLRDNORM : 0;
  }
}

/** FAULT or vEVENTQ. */
export type EventQueueKind = "fault" | "veventq";

/**
 * The event-queue descriptors of one open /dev/iommu: each FAULT and vEVENTQ object's
 * file state by id, and how many descriptors are open on each (iommufd_eventq_init
 * takes an obj.users reference per file, so IOMMU_DESTROY is EBUSY while one is open).
 */
export class EventQueues {
  readonly #faults = new Map<number, FaultFile>();
  readonly #veventqs = new Map<number, VeventqFile>();
  readonly #open = new Map<number, number>();

  /** A FAULT object was allocated (IOMMU_FAULT_QUEUE_ALLOC). */
  addFault(id: number, f: FaultFile): void {
    this.#faults.set(id, f);
  }

  /** A vEVENTQ was allocated (IOMMU_VEVENTQ_ALLOC). */
  addVeventq(id: number, f: VeventqFile): void {
    this.#veventqs.set(id, f);
  }

  #fd(kind: EventQueueKind, id: number): FaultFile | VeventqFile {
    const f = kind === "fault" ? this.#faults.get(id) : this.#veventqs.get(id);
    if (f === undefined) throw new IommuError("EBADFD", `${kind} ${id} is gone`);
    return f;
  }

  /**
   * read(2) on the descriptor of `id` into the caller's `buf` (iommufd_fault_fops_read /
   * iommufd_veventq_fops_read). Returns the bytes read; throws an {@link IommuError}
   * (ESPIPE, EFAULT, EBADFD for an object that is gone).
   */
  read(kind: EventQueueKind, id: number, buf: bigint, count: number, mem: UserMemory): number {
    return this.#fd(kind, id).read(count, (off, b) => mem.write(buf + BigInt(off), b));
  }

  /** write(2) (iommufd_fault_fops_write); a vEVENTQ has no write op (EINVAL, as vfs_write). */
  write(kind: EventQueueKind, id: number, buf: bigint, count: number, mem: UserMemory): number {
    const f = this.#fd(kind, id);
    if (!(f instanceof FaultFile)) throw new IommuError("EINVAL", "a vEVENTQ is not writable");
    return f.write(count, (off, len) => mem.read(buf + BigInt(off), len));
  }

  /** poll(2) mask (iommufd_eventq_fops_poll). */
  poll(kind: EventQueueKind, id: number): number {
    return this.#fd(kind, id).poll();
  }

  /** A descriptor of `id` was opened (+1) or its last reference closed (-1). */
  ref(id: number, delta: 1 | -1): void {
    const n = (this.#open.get(id) ?? 0) + delta;
    if (n > 0) this.#open.set(id, n);
    else this.#open.delete(id);
  }

  /** True while a descriptor of `id` is open. */
  isOpen(id: number): boolean {
    return (this.#open.get(id) ?? 0) > 0;
  }

  /** iommufd_fault_iopf_handler: a group of page requests for FAULT `id` (the selftest's TRIGGER_IOPF). */
  inject(id: number, group: PageFaultGroup): void {
    const f = this.#faults.get(id);
    if (f === undefined) throw new IommuError("ENOENT", `no fault object ${id}`);
    f.inject(group);
  }

  /** `id` was destroyed: its file state goes (iommufd_fault_destroy answers every group INVALID). */
  forget(id: number): void {
    this.#faults.get(id)?.release();
    this.#faults.delete(id);
    this.#veventqs.delete(id);
  }
}

/**
 * DMA issued by host devices: routing (an mdev's PASID DMA leaves through its parent's
 * IOMMU with the PASID its backend assigned), the all-or-nothing transfer of
 * {@link DmaEngine}, fault delivery (the host's queue, and the fault queue object of
 * the HWPT that served the request, iommufd's IOMMU_HWPT_FAULT_ID_VALID) and walk
 * explanations routed the same way. iommufd has no DMA of its own (the device does
 * it); this is the hardware side the model adds.
 *
 * `dmaInto` is the hot path: no allocation on success, so the route is left in fields
 * rather than returned as a tuple.
 */

import type { AccessName, Backend, PhysicalMemory, WalkStep } from "@iommu-kit/core";
import { Access, accessFlags, IommuError, NO_PASID } from "@iommu-kit/core";
import type { HostCtx } from "./context.ts";
import type { HostDevice } from "./device.ts";
import { getDevice } from "./device.ts";
import { DmaEngine } from "./dma.ts";
import type { FaultRecord, HeldDma, PageResponse } from "./fault.ts";
import { FaultQueue, faultRecord, faultRespondGroup } from "./fault.ts";
import type { Hwpt } from "./hw-pagetable.ts";
import { checkIova, checkLength, checkPasid, checkTransfer, MAX_IOVA, PASID_BITS } from "./io-pagetable.ts";

const PAGE = 4096;
const PAGE_INV = 1 / PAGE;

/** A DMA issued by a device. */
export interface DmaRequest {
  /** PASID of the request; omitted/null = none (an mdev attached by PASID uses its assigned PASID). */
  readonly pasid?: number | null;
  readonly iova: number;
  readonly access: AccessName;
  /** Privileged (supervisor) request. */
  readonly priv?: boolean;
  /** Bytes to read (reads). */
  readonly length?: number;
  /** Bytes to write (writes). */
  readonly data?: Uint8Array;
}

/**
 * The outcome of a DMA: bytes moved (and read), the fault that stopped it before
 * anything moved, or (`pending`) a page request a FAULT object holds: the DMA waits for
 * `Host.faultRespond` with `cookie`, which retries or fails it.
 */
export type DmaResult =
  | { readonly ok: true; readonly pa: number; readonly data?: Uint8Array }
  | { readonly ok: false; readonly fault: FaultRecord; readonly pending?: false }
  | { readonly ok: false; readonly fault: FaultRecord; readonly pending: true; readonly cookie: number };

/** A walk to explain (see `Host.explain`). */
export interface ExplainRequest {
  readonly pasid?: number | null;
  readonly iova: number | bigint;
  readonly access: AccessName;
  readonly priv?: boolean;
}

/** The DMA side of a host: one engine, the host-wide fault queue. */
export class DeviceDma {
  /** Every delivered fault, by device (read with `Host.faultsRead`). */
  readonly faults: FaultQueue = new FaultQueue();
  readonly #ctx: HostCtx;
  readonly #memory: PhysicalMemory;
  readonly #eng = new DmaEngine();
  #routeRid = 0;
  #routePasid = NO_PASID;

  constructor(ctx: HostCtx) {
    this.#ctx = ctx;
    this.#memory = ctx.memory;
  }

  /**
   * The backend a device's DMA goes out through, with the rid and PASID left in
   * `#routeRid` / `#routePasid`. An mdev's PASID DMA leaves through its parent.
   */
  #route(dev: HostDevice, pasid: number | null | undefined): Backend {
    if (dev.parent !== null) {
      // An mdev's DMA carries only the PASID its backend assigned: any other PASID stays
      // with the mdev backend, which blocks it (MDEV_BLOCKED), and never reaches the
      // parent, where it could be a sibling's.
      const p =
        pasid === null || pasid === undefined
          ? dev.pasids.keys().next().value
          : dev.pasids.has(pasid)
            ? pasid
            : undefined;
      if (p !== undefined) {
        this.#routeRid = dev.parent.rid;
        this.#routePasid = p;
        return dev.parent.backend;
      }
      this.#routeRid = dev.rid;
      this.#routePasid = pasid ?? NO_PASID;
      return dev.backend;
    }
    this.#routeRid = dev.rid;
    this.#routePasid = pasid ?? NO_PASID;
    return dev.backend;
  }

  /** `Host.dma`: translate every page, then move the bytes; a fault is delivered and returned. */
  dma(device: number, req: DmaRequest): DmaResult {
    const dev = getDevice(this.#ctx, device);
    checkIova(req.iova);
    if (req.pasid !== null && req.pasid !== undefined) checkPasid(req.pasid);
    const write = req.access === "write";
    const data = req.data;
    const length = write ? (data?.length ?? 0) : (req.length ?? 0);
    if (write && data === undefined) throw new IommuError("EINVAL", "a DMA write needs data");
    // A write's length is its caller's buffer; a read's becomes a new one.
    if (write) checkLength(length);
    else checkTransfer(length);
    if (req.iova + length - 1 > MAX_IOVA)
      throw new IommuError("EOVERFLOW", "DMA range overflows", { iova: req.iova });
    const backend = this.#route(dev, req.pasid);
    const rid = this.#routeRid;
    const pasid = this.#routePasid;
    const access = accessFlags(req.access, req.priv === true);
    return this.#issue(
      dev,
      backend,
      rid,
      pasid,
      req.pasid ?? null,
      req.iova,
      access,
      write ? data! : null,
      length,
    );
  }

  /** Translates and moves one routed DMA; a fault is delivered (a page request may hold it). */
  #issue(
    dev: HostDevice,
    backend: Backend,
    rid: number,
    pasid: number,
    reqPasid: number | null,
    iova: number,
    access: number,
    data: Uint8Array | null,
    length: number,
  ): DmaResult {
    const write = data !== null;
    const eng = this.#eng;
    const reported = this.#ctx.vevents.reported;
    if (!eng.translate(backend, rid, pasid, iova, length, access)) {
      const held: HeldDma = { device: dev.id, pasid: reqPasid, iova, access, data, length };
      return this.#deliver(dev, backend, pasid, eng.faultIova, access, reported, held);
    }
    if (write) {
      eng.write(this.#memory, data);
      return { ok: true, pa: eng.firstPa };
    }
    const out = new Uint8Array(length);
    eng.read(this.#memory, out);
    return { ok: true, pa: eng.firstPa, data: out };
  }

  /** `Host.dmaInto`: the allocation-free path; the first byte's physical address, or -1 after a fault. */
  dmaInto(device: number, pasid: number | null, iova: number, access: number, buf: Uint8Array): number {
    const o = this.#ctx.objects.find(device);
    if (o === undefined || o.kind !== "device") getDevice(this.#ctx, device);
    const dev = o as HostDevice;
    // The same argument checks as `dma`, kept to cheap comparisons (no allocation).
    if (!Number.isSafeInteger(iova) || iova < 0) checkIova(iova);
    if (pasid !== null && !(pasid >= 0 && pasid < 2 ** PASID_BITS && Number.isInteger(pasid)))
      checkPasid(pasid);
    if (iova + buf.length - 1 > MAX_IOVA)
      throw new IommuError("EOVERFLOW", "DMA range overflows", { iova, length: buf.length });
    const backend = this.#route(dev, pasid);
    const rid = this.#routeRid;
    const p = this.#routePasid;
    const eng = this.#eng;
    const reported = this.#ctx.vevents.reported;
    const out = eng.out;
    const n = buf.length;
    let ok = backend.translate(rid, p, iova, access, out);
    if (ok) {
      // The common DMA: inside one 4 KiB page (a translation keeps the page offset, and
      // its region is at least that page) whose frame is RAM: one copy, no engine state.
      const pa = out.pa;
      const off = (pa | 0) & (PAGE - 1);
      if (off + n <= PAGE && out.sizeLg2 >= 12) {
        const write = (access & Access.WRITE) !== 0;
        const pfn = (pa - off) * PAGE_INV;
        const page = write ? this.#memory.writePage(pfn) : this.#memory.readPage(pfn);
        if (page !== null) {
          const bytes = eng.bytes(page);
          if (write) bytes.set(buf, off);
          else buf.set(n === PAGE ? bytes : bytes.subarray(off, off + n));
          return pa;
        }
      }
      ok = eng.translateRest(backend, rid, p, iova, n, access);
    } else eng.failed(iova);
    if (!ok) {
      // A held write keeps a copy of the bytes: the caller may reuse `buf` before the answer.
      const held: HeldDma = {
        device: dev.id,
        pasid,
        iova,
        access,
        data: access & Access.WRITE ? buf.slice() : null,
        length: n,
      };
      this.#deliver(dev, backend, p, eng.faultIova, access, reported, held);
      return -1;
    }
    if (access & Access.WRITE) eng.write(this.#memory, buf);
    else eng.read(this.#memory, buf);
    return eng.firstPa;
  }

  /** The HWPT serving (`dev`, `pasid`): the RID's, the PASID's, or the mdev's that the parent issues for. */
  #servingHwpt(dev: HostDevice, pasid: number): Hwpt | null {
    return pasid === NO_PASID
      ? (dev.ridAttach?.hwpt ?? null)
      : (dev.pasids.get(pasid) ??
          // The parent issuing an mdev's PASID: that mdev's HWPT served it.
          dev.mdevPasids.get(pasid)?.pasids.get(pasid) ??
          dev.ridAttach?.hwpt ??
          null);
  }

  /**
   * Delivers the engine's fault (see fault.ts). A page request (`Fault.pageRequest`) goes
   * to the serving HWPT's FAULT object and holds the DMA (iommu_report_device_fault ->
   * iommufd_fault_iopf_handler); with none it is answered Invalid at once
   * (iopf_error_response when find_fault_handler finds no handler) and logged. Any other
   * fault goes to the host-wide log unless a vEVENTQ took it during the translation
   * (`reported`: the vEVENTQs' count before it).
   */
  #deliver(
    dev: HostDevice,
    backend: Backend,
    pasid: number,
    iova: number,
    access: number,
    reported: number,
    held: HeldDma,
  ): DmaResult {
    const f = this.#eng.fault!;
    const rec = faultRecord(dev.id, pasid, iova, access, f);
    const req = f.pageRequest;
    if (req !== undefined) {
      const h = this.#servingHwpt(dev, pasid);
      const fq = h?.faultQueue ?? null;
      if (fq !== null && h !== null && backend.pageResponse !== undefined) {
        const cookie = fq.nextCookie();
        // The attach handle the group belongs to (group->attach_handle): the mdev's when
        // its parent issued for its PASID.
        const owner = pasid !== NO_PASID && !dev.pasids.has(pasid) ? (dev.mdevPasids.get(pasid) ?? dev) : dev;
        fq.deliver.push({ cookie, device: dev, owner, backend, hwpt: h, request: req, record: rec, held });
        return { ok: false, fault: rec, pending: true, cookie };
      }
      backend.pageResponse?.(req, "invalid");
      this.faults.push(rec);
      return { ok: false, fault: rec };
    }
    if (this.#ctx.vevents.reported === reported) this.faults.push(rec);
    return { ok: false, fault: rec };
  }

  /**
   * `Host.faultRespond`: answers the group (fault.ts faultRespondGroup) and re-issues the
   * DMA held on it after success (it may be held again), or fails it after invalid.
   */
  respond(id: number, resp: PageResponse): DmaResult[] {
    const g = faultRespondGroup(this.#ctx, id, resp);
    if (resp.code === "invalid") return [{ ok: false, fault: g.record }];
    const d = g.held;
    const dev = getDevice(this.#ctx, d.device);
    const backend = this.#route(dev, d.pasid);
    return [
      this.#issue(
        dev,
        backend,
        this.#routeRid,
        this.#routePasid,
        d.pasid,
        d.iova,
        d.access,
        d.data,
        d.length,
      ),
    ];
  }

  /** `Host.explain`: the backend's walk of one request, routed like a DMA. */
  explain(device: number, req: ExplainRequest): readonly WalkStep[] {
    const dev = getDevice(this.#ctx, device);
    if (req.pasid !== null && req.pasid !== undefined) checkPasid(req.pasid);
    // A bigint IOVA may use all 64 bits (a walk past the host's 2^53 is still explainable).
    if (typeof req.iova === "bigint") {
      if (req.iova < 0n || req.iova >= 1n << 64n)
        throw new IommuError("EINVAL", `bad iova ${req.iova}`, { iova: req.iova });
    } else checkIova(req.iova);
    const backend = this.#route(dev, req.pasid);
    const rid = this.#routeRid;
    const pasid = this.#routePasid;
    if (backend.explain === undefined)
      throw new IommuError("EOPNOTSUPP", `IOMMU ${backend.name} cannot explain walks`);
    return backend.explain(rid, pasid, BigInt(req.iova), accessFlags(req.access, req.priv === true));
  }
}

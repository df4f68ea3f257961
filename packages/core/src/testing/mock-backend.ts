/**
 * The mock backend: a complete, small IOMMU (selftest's mock domain in spirit) for
 * tests that need a parent (mdev-emulated) or a second backend, and a worked example
 * of the contract. It passes the conformance suite itself.
 *
 * - Devices: any 16-bit rid; PASIDs up to 20 bits (MOCK_PASID_WIDTH).
 * - Intents: `rid`, and `pasid` for devices with pasidBits > 0.
 * - Domains: paging in the mock format (`mock-format.ts`), identity, blocked; dirty
 *   tracking (D bit set by tracked writes). No nesting.
 * - Caches: an IOTLB tagged by domain id, kept until `invalidateRange` / `flushCaches`
 *   (unmap invalidates on its own, as a driver does).
 * - Faults (vendor "mock"): 1 MOCK_TRANSLATION, 2 MOCK_PERMISSION, 3 MOCK_BLOCKED,
 *   4 MOCK_WALK_EABT (a table read hit a bus error).
 */

import { Access, Perm, permNeeded } from "../access.ts";
import { NO_PASID } from "../addresses.ts";
import type {
  AttachResult,
  Backend,
  BackendContext,
  BackendFactory,
  CacheCounters,
  DeviceSpec,
  Domain,
  DomainFlags,
  DomainRequest,
  DomainType,
  IovaRange,
  WalkStep,
} from "../backend.ts";
import type { Capabilities } from "../capabilities.ts";
import { assertIntentAllowed, pageSizeBitmap } from "../capabilities.ts";
import { FastIotlb, IotlbMeta, iotlbMeta } from "../driver/fast-iotlb.ts";
import { EntryKind, entrySizeLg2, PageTable } from "../driver/page-table.ts";
import { hex, IommuError } from "../errors.ts";
import type { Fault, FaultClass } from "../fault.ts";
import type { AttachIntent } from "../intent.ts";
import type { PhysicalMemory } from "../memory/physical-memory.ts";
import type { TableAllocator } from "../memory/table-allocator.ts";
import type { Translation, TranslationOutcome } from "../translation.ts";
import { createTranslation, outcomeOf } from "../translation.ts";
import { MockPte, mockFormat } from "./mock-format.ts";

/** Mock PASID width (MOCK_PASID_WIDTH in iommufd_test.h). */
export const MOCK_PASID_WIDTH = 20;
/** Mock fault codes. */
export const MockFaultCode = {
  MOCK_TRANSLATION: 1,
  MOCK_PERMISSION: 2,
  MOCK_BLOCKED: 3,
  MOCK_WALK_EABT: 4,
} as const;

/** Mock IOTLB meta bit: the page is known dirty (perm sits in 2:0). */
const TLB_DIRTY = 8;
const scratch = new Uint32Array(2);

/** A mock domain. */
export class MockDomain implements Domain {
  readonly backend: MockBackend;
  readonly id: number;
  readonly type: DomainType;
  readonly format: string;
  readonly flags: DomainFlags;
  readonly aperture: IovaRange;
  readonly pageSizeBitmap: bigint;
  /** The page table (paging domains only). */
  readonly table: PageTable | null;
  /** Attach points holding this domain. */
  users = 0;
  /** Dirty tracking on. */
  dirtyTracking = false;
  #freed = false;

  constructor(
    backend: MockBackend,
    id: number,
    type: DomainType,
    flags: DomainFlags,
    table: PageTable | null,
  ) {
    this.backend = backend;
    this.id = id;
    this.type = type;
    this.flags = flags;
    this.table = table;
    this.format = table === null ? "" : mockFormat.name;
    this.aperture = table === null ? { start: 0, last: 0 } : { start: 0, last: 2 ** 39 - 1 };
    this.pageSizeBitmap = table === null ? 0n : pageSizeBitmap([12, 21, 30]);
  }

  #paging(op: string): PageTable {
    if (this.#freed) throw new IommuError("EINVAL", `${op} on freed mock domain ${this.id}`);
    if (this.table === null) throw new IommuError("EINVAL", `${op} needs a paging domain, not ${this.type}`);
    return this.table;
  }

  map(iova: number, pa: number, length: number, prot: number): void {
    const t = this.#paging("map");
    if (!Number.isSafeInteger(iova) || iova < 0 || iova + length - 1 > this.aperture.last) {
      throw new IommuError("EINVAL", `map ${hex(iova)}+${hex(length)} is outside the aperture`, {
        iova,
        length,
      });
    }
    t.map(iova, pa, length, prot);
  }

  unmap(iova: number, length: number): number {
    const t = this.#paging("unmap");
    const n = t.unmap(iova, length);
    if (n > 0) this.backend.invalidateRange(this, iova, length);
    return n;
  }

  iovaToPhys(iova: number): number {
    if (this.table === null) return this.type === "identity" ? iova : -1;
    return this.table.lookup(iova)?.pa ?? -1;
  }

  free(): void {
    if (this.#freed) throw new IommuError("EINVAL", `mock domain ${this.id} is already freed`);
    if (this.users > 0)
      throw new IommuError("EBUSY", `mock domain ${this.id} is attached ${this.users} time(s)`);
    this.#freed = true;
    this.table?.destroy();
    this.backend.invalidateDomain(this);
  }

  get freed(): boolean {
    return this.#freed;
  }

  setDirtyTracking(enable: boolean): void {
    this.#paging("setDirtyTracking");
    if (!this.flags.dirtyTracking)
      throw new IommuError("EINVAL", "domain was not allocated with dirty tracking");
    this.dirtyTracking = enable;
  }

  readDirty(iova: number, length: number, pageSizeLg2: number, bitmap: Uint8Array, noClear: boolean): void {
    const t = this.#paging("readDirty");
    const pages = Math.ceil(length / 2 ** pageSizeLg2);
    if (bitmap.length * 8 < pages)
      throw new IommuError("EINVAL", `bitmap of ${bitmap.length} bytes < ${pages} pages`);
    t.forEachLeaf(iova, length, (base, sizeLg2, words, w) => {
      if ((words[w]! & MockPte.D) === 0) return;
      const from = Math.max(base, iova);
      const to = Math.min(base + 2 ** sizeLg2, iova + length);
      for (let p = Math.floor((from - iova) / 2 ** pageSizeLg2); p * 2 ** pageSizeLg2 + iova < to; p++) {
        bitmap[p >>> 3]! |= 1 << (p & 7);
      }
      if (!noClear) words[w] = (words[w]! & ~MockPte.D) >>> 0;
    });
    if (!noClear) this.backend.invalidateRange(this, iova, length);
  }
}

interface MockDevice {
  readonly spec: DeviceSpec;
  readonly caps: Capabilities;
  rid: MockDomain | null;
  readonly pasids: Map<number, MockDomain>;
}

/** The mock IOMMU. */
export class MockBackend implements Backend {
  readonly kind = "mock";
  readonly name: string;
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  readonly #devices = new Map<number, MockDevice>();
  /** Cached pages by domain id; meta: perm in 2:0, DIRTY once the page is known dirty. */
  readonly #tlb = new FastIotlb(10);
  #nextDomain = 1;
  #hits = 0;
  #misses = 0;
  #walks = 0;
  #invalidations = 0;

  constructor(ctx: BackendContext) {
    this.name = ctx.name;
    this.memory = ctx.memory;
    this.tables = ctx.tables;
  }

  addDevice(spec: DeviceSpec): void {
    if (!Number.isInteger(spec.rid) || spec.rid < 0 || spec.rid > 0xffff) {
      throw new IommuError("EINVAL", `mock rid ${spec.rid} is not a 16-bit number`, { rid: spec.rid });
    }
    if (this.#devices.has(spec.rid))
      throw new IommuError("EEXIST", `mock device ${spec.rid} exists`, { rid: spec.rid });
    const pasidLog2 = Math.min(Math.max(0, spec.pasidBits | 0), MOCK_PASID_WIDTH);
    const caps: Capabilities = {
      intents: pasidLog2 > 0 ? ["rid", "pasid"] : ["rid"],
      maxPasidLog2: pasidLog2,
      pasidAssignment: "caller",
      inputAddressBits: 39,
      outputAddressBits: 52,
      pageSizeBitmap: pageSizeBitmap([12, 21, 30]),
      formats: [mockFormat.name],
      features: {
        dirtyTracking: true,
        pasidExec: pasidLog2 > 0,
        pasidPriv: pasidLog2 > 0,
        atsNotSupported: !spec.ats,
        nesting: false,
        coherent: true,
      },
      hwInfo: { type: "none" },
    };
    this.#devices.set(spec.rid, { spec, caps, rid: null, pasids: new Map() });
  }

  #device(rid: number): MockDevice {
    const d = this.#devices.get(rid);
    if (d === undefined) throw new IommuError("ENOENT", `no mock device with rid ${rid}`, { rid });
    return d;
  }

  removeDevice(rid: number): void {
    const d = this.#device(rid);
    if (d.rid !== null || d.pasids.size > 0)
      throw new IommuError("EBUSY", `mock device ${rid} is attached`, { rid });
    this.#devices.delete(rid);
  }

  capabilities(rid: number): Capabilities {
    return this.#device(rid).caps;
  }

  reservedRegions(): readonly IovaRange[] {
    return [];
  }

  allocDomain(request: DomainRequest): Domain {
    if (request.type === "nested") throw new IommuError("EOPNOTSUPP", "the mock backend has no nesting");
    if (request.type === "blocked" || request.type === "identity") {
      return new MockDomain(this, this.#nextDomain++, request.type, {}, null);
    }
    if (request.rid !== undefined) this.#device(request.rid);
    if (request.format !== undefined && request.format !== mockFormat.name) {
      throw new IommuError("EOPNOTSUPP", `mock has no format ${request.format}`, { format: request.format });
    }
    const flags = request.flags ?? {};
    if (flags.nestParent) throw new IommuError("EOPNOTSUPP", "the mock backend has no nest parents");
    const table = new PageTable(mockFormat, this.tables);
    return new MockDomain(this, this.#nextDomain++, "paging", { ...flags }, table);
  }

  #own(domain: Domain): MockDomain {
    if (!(domain instanceof MockDomain) || domain.backend !== this) {
      throw new IommuError(
        "EINVAL",
        `domain ${domain.id} belongs to another backend (${domain.backend.name})`,
      );
    }
    if (domain.freed) throw new IommuError("EINVAL", `domain ${domain.id} is freed`);
    return domain;
  }

  attach(rid: number, intent: AttachIntent, domain: Domain): AttachResult {
    const d = this.#device(rid);
    assertIntentAllowed(d.caps, intent);
    const dom = this.#own(domain);
    if (intent.kind === "pasid") {
      const pasid = intent.pasid as number;
      const old = d.pasids.get(pasid);
      if (old === dom) return { pasid };
      dom.users++;
      if (old !== undefined) old.users--;
      d.pasids.set(pasid, dom);
      return { pasid };
    }
    if (d.rid === dom) return {};
    dom.users++;
    if (d.rid !== null) d.rid.users--;
    d.rid = dom;
    return {};
  }

  detach(rid: number, intent: AttachIntent): void {
    const d = this.#device(rid);
    if (intent.kind === "pasid") {
      if (typeof intent.pasid !== "number") throw new IommuError("EINVAL", "detach needs the PASID number");
      const old = d.pasids.get(intent.pasid);
      if (old === undefined) return;
      old.users--;
      d.pasids.delete(intent.pasid);
      return;
    }
    if (intent.kind !== "rid") return;
    if (d.rid !== null) d.rid.users--;
    d.rid = null;
  }

  attached(rid: number, intent: AttachIntent): Domain | null {
    const d = this.#device(rid);
    if (intent.kind === "pasid")
      return typeof intent.pasid === "number" ? (d.pasids.get(intent.pasid) ?? null) : null;
    return intent.kind === "rid" ? d.rid : null;
  }

  translate(rid: number, pasid: number, iova: number, access: number, out: Translation): boolean {
    const d = this.#devices.get(rid);
    const dom = d === undefined ? null : pasid === NO_PASID ? d.rid : (d.pasids.get(pasid) ?? null);
    if (dom === null || dom.type === "blocked")
      return this.#fault(out, "blocked", MockFaultCode.MOCK_BLOCKED, rid, pasid, iova, access);
    if (dom.type === "identity") {
      out.pa = iova;
      out.perm = Perm.R | Perm.W | Perm.X;
      out.sizeLg2 = 12;
      out.fault = null;
      return true;
    }
    const vpn = Math.floor(iova / 4096);
    const write = (access & Access.WRITE) !== 0;
    const slot = this.#tlb.lookup(dom.id, vpn);
    // A tracked write through an entry not yet marked dirty must walk to set D.
    const meta = slot >= 0 ? this.#tlb.data[(slot << 2) + 3]! : 0;
    if (slot >= 0 && !(write && dom.dirtyTracking && (meta & TLB_DIRTY) === 0)) {
      this.#hits++;
      const perm = meta & 7;
      if ((perm & permNeeded(access)) !== permNeeded(access)) {
        return this.#fault(out, "permission", MockFaultCode.MOCK_PERMISSION, rid, pasid, iova, access);
      }
      out.pa = this.#tlb.data[(slot << 2) + 2]! + (iova % 4096);
      out.perm = perm;
      out.sizeLg2 = meta >>> IotlbMeta.SIZE_SHIFT;
      out.fault = null;
      return true;
    }
    this.#misses++;
    return this.#walk(dom, rid, pasid, iova, access, out);
  }

  #walk(
    dom: MockDomain,
    rid: number,
    pasid: number,
    iova: number,
    access: number,
    out: Translation,
  ): boolean {
    this.#walks++;
    if (iova < 0 || iova > dom.aperture.last) {
      return this.#fault(out, "translation", MockFaultCode.MOCK_TRANSLATION, rid, pasid, iova, access);
    }
    let table = dom.table!.root;
    for (let level = 2; level >= 0; level--) {
      const sizeLg2 = entrySizeLg2(mockFormat, level);
      const ea = table + (Math.floor(iova / 2 ** sizeLg2) % 512) * 8;
      const page = this.memory.readPage(Math.floor(ea / 4096));
      if (page === null)
        return this.#fault(out, "walk-abort", MockFaultCode.MOCK_WALK_EABT, rid, pasid, iova, access);
      const w = (ea & 0xfff) >>> 2;
      const lo = page[w]!;
      const hi = page[w + 1]!;
      const kind = mockFormat.entryKind(lo, hi, level);
      if (kind === EntryKind.EMPTY) {
        return this.#fault(out, "translation", MockFaultCode.MOCK_TRANSLATION, rid, pasid, iova, access);
      }
      const addr = mockFormat.entryAddress(lo, hi, level);
      if (kind === EntryKind.TABLE) {
        table = addr;
        continue;
      }
      const perm = mockFormat.leafPerm(lo, hi, level);
      const need = permNeeded(access);
      if ((perm & need) !== need) {
        return this.#fault(out, "permission", MockFaultCode.MOCK_PERMISSION, rid, pasid, iova, access);
      }
      let dirty = lo & MockPte.D ? 1 : 0;
      if (access & Access.WRITE && dom.dirtyTracking && !dirty) {
        const wp = this.memory.writePage(Math.floor(ea / 4096));
        if (wp !== null) wp[w] = (lo | MockPte.D) >>> 0;
        dirty = 1;
      }
      const offset = iova % 2 ** sizeLg2;
      const pa = addr + offset;
      this.#tlb.insert(
        dom.id,
        Math.floor(iova / 4096),
        pa - (pa % 4096),
        iotlbMeta(perm | (dirty ? TLB_DIRTY : 0), sizeLg2),
      );
      out.pa = pa;
      out.perm = perm;
      out.sizeLg2 = sizeLg2;
      out.fault = null;
      return true;
    }
    return this.#fault(out, "translation", MockFaultCode.MOCK_TRANSLATION, rid, pasid, iova, access);
  }

  #fault(
    out: Translation,
    cls: FaultClass,
    code: number,
    rid: number,
    pasid: number,
    iova: number,
    access: number,
  ): false {
    const name = Object.keys(MockFaultCode)[code - 1]!;
    const fault: Fault = {
      class: cls,
      recorded: cls !== "blocked",
      vendor: {
        vendor: "mock",
        code,
        name,
        fields: {
          rid,
          pasid: pasid === NO_PASID ? null : pasid,
          iova: hex(iova),
          write: (access & Access.WRITE) !== 0,
        },
      },
    };
    out.fault = fault;
    return false;
  }

  translateBig(rid: number, pasid: number, iova: bigint, access: number): TranslationOutcome {
    const out = createTranslation();
    if (iova >= 2n ** 39n) {
      this.#fault(out, "translation", MockFaultCode.MOCK_TRANSLATION, rid, pasid, 0, access);
      return outcomeOf(false, out);
    }
    return outcomeOf(this.translate(rid, pasid, Number(iova), access, out), out);
  }

  /** Drops cached translations of `domain` that cover [iova, iova + length) (the mock's TLBI). */
  invalidateRange(domain: Domain, iova: number, length: number): void {
    this.#invalidations++;
    this.#tlb.invalidateRange(domain.id, -1, iova, iova + length);
  }

  /** Drops every cached translation of `domain`. */
  invalidateDomain(domain: Domain): void {
    this.#invalidations++;
    this.#tlb.invalidateTag(domain.id);
  }

  flushCaches(): void {
    this.#invalidations++;
    this.#tlb.clear();
  }

  counters(): CacheCounters {
    return {
      iotlbHits: this.#hits,
      iotlbMisses: this.#misses,
      configHits: 0,
      configMisses: 0,
      walks: this.#walks,
      invalidations: this.#invalidations,
    };
  }

  explain(rid: number, pasid: number, iova: bigint): readonly WalkStep[] {
    const d = this.#devices.get(rid);
    const dom = d === undefined ? null : pasid === NO_PASID ? d.rid : (d.pasids.get(pasid) ?? null);
    if (dom === null || dom.table === null) {
      return [
        { what: "attach point", address: null, note: dom === null ? "blocked: nothing attached" : dom.type },
      ];
    }
    const steps: WalkStep[] = [];
    let table = dom.table.root;
    const va = Number(iova);
    for (let level = 2; level >= 0; level--) {
      const sizeLg2 = entrySizeLg2(mockFormat, level);
      const index = Math.floor(va / 2 ** sizeLg2) % 512;
      const ea = table + index * 8;
      const raw = this.memory.read32(ea) === -1 ? null : this.memory.read64(ea);
      if (raw === null) {
        steps.push({ what: `L${level} table`, address: ea, index, note: "bus error" });
        break;
      }
      const lo = Number(raw & 0xffffffffn);
      const hi = Number(raw >> 32n);
      const kind = mockFormat.entryKind(lo, hi, level);
      const note =
        kind === EntryKind.EMPTY
          ? "invalid: translation fault"
          : kind === EntryKind.TABLE
            ? "table"
            : `leaf 2^${sizeLg2}`;
      steps.push({
        what: `L${level} table`,
        address: ea,
        index,
        raw: [`0x${raw.toString(16).padStart(16, "0")}`],
        note,
      });
      if (kind !== EntryKind.TABLE) break;
      table = mockFormat.entryAddress(lo, hi, level);
    }
    return steps;
  }

  dump(rid?: number): unknown {
    const out: Record<string, unknown> = {};
    for (const [r, d] of this.#devices) {
      if (rid !== undefined && r !== rid) continue;
      out[String(r)] = {
        rid: d.rid === null ? null : { domain: d.rid.id, type: d.rid.type, root: d.rid.table?.root ?? null },
        pasids: Object.fromEntries(
          [...d.pasids].map(([p, dom]) => [String(p), { domain: dom.id, root: dom.table?.root ?? null }]),
        ),
      };
    }
    return out;
  }
}

/** The mock backend's factory ("mock"). */
export const mockBackend: BackendFactory = {
  name: "mock",
  description: "A small mock IOMMU (iommufd selftest style): 3-level 4K table, PASIDs, dirty tracking.",
  configSchema: { type: "object", additionalProperties: false, properties: {} },
  create: (ctx: BackendContext): Backend => new MockBackend(ctx),
};

/** Rewrites the leaf mapping `iova` in a mock domain to `newPa` without invalidation (conformance hook). */
export function mockRewriteLeaf(domain: Domain, iova: number, newPa: number): void {
  const d = domain as MockDomain;
  const leaf = d.table?.lookup(iova);
  if (leaf === null || leaf === undefined) throw new IommuError("ENOENT", `no leaf at ${hex(iova)}`);
  d.table!.forEachLeaf(iova, 1, (_base, sizeLg2, words, w, level) => {
    mockFormat.encodeLeaf(newPa - (newPa % 2 ** sizeLg2), level, leaf.perm, scratch);
    words[w] = scratch[0]!;
    words[w + 1] = scratch[1]!;
  });
}

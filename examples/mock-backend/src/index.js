// @ts-check
/**
 * A minimal third-party backend for iommu-kit: the "toy" IOMMU.
 *
 * Table format (this file is its spec): 2 levels of 512 x 8-byte entries over 4 KiB pages,
 * so 30-bit IOVAs. Entry bits: 0 V (valid), 1 R, 2 W, 51:12 address. A valid entry in the
 * top table (level 1) points at a leaf table; a valid entry in a leaf table (level 0) maps
 * one 4 KiB page. No blocks, no PASIDs, no nesting: intents `rid` only.
 *
 * It uses only the public API of @iommu-kit/core (`.` and `./driver`).
 */

import {
  Access,
  assertIntentAllowed,
  createTranslation,
  IommuError,
  NO_PASID,
  Perm,
  permNeeded,
} from "@iommu-kit/core";
import { addressField, EntryKind, FastIotlb, iotlbMeta, PageTable } from "@iommu-kit/core/driver";

/** @typedef {import("@iommu-kit/core").Backend} Backend */
/** @typedef {import("@iommu-kit/core").Domain} Domain */

const V = 1;
const R = 2;
const W = 4;

/** @type {import("@iommu-kit/core/driver").PtFormat} */
export const toyFormat = {
  name: "toy-2lvl",
  granuleLg2: 12,
  levels: 2,
  topTableLg2: 12,
  leafAllowed: (level) => level === 0,
  entryKind: (lo, _hi, level) =>
    (lo & V) === 0 ? EntryKind.EMPTY : level === 0 ? EntryKind.LEAF : EntryKind.TABLE,
  entryAddress: (lo, hi) => addressField(lo, hi, 51, 12),
  leafPerm: (lo) => (lo & R ? Perm.R : 0) | (lo & W ? Perm.W : 0),
  encodeTable(pa, _level, out) {
    out[0] = (pa | V) >>> 0;
    out[1] = Math.floor(pa / 2 ** 32);
  },
  encodeLeaf(pa, _level, prot, out) {
    out[0] = (pa | V | (prot & Perm.R ? R : 0) | (prot & Perm.W ? W : 0)) >>> 0;
    out[1] = Math.floor(pa / 2 ** 32);
  },
};

/** @implements {Domain} */
export class ToyDomain {
  /**
   * @param {ToyIommu} backend
   * @param {number} id
   * @param {"paging" | "blocked" | "identity"} type
   * @param {PageTable | null} table
   */
  constructor(backend, id, type, table) {
    this.backend = backend;
    this.id = id;
    this.type = type;
    this.table = table;
    this.format = table ? toyFormat.name : "";
    this.flags = {};
    this.aperture = { start: 0, last: table ? 2 ** 30 - 1 : 0 };
    this.pageSizeBitmap = table ? 1n << 12n : 0n;
    this.users = 0;
    this.freed = false;
  }

  /** @returns {PageTable} */
  paging() {
    if (this.table === null || this.freed) throw new IommuError("EINVAL", `toy domain ${this.id} cannot map`);
    return this.table;
  }

  /** @param {number} iova @param {number} pa @param {number} length @param {number} prot */
  map(iova, pa, length, prot) {
    if (iova < 0 || iova + length > 2 ** 30)
      throw new IommuError("EINVAL", `0x${iova.toString(16)} is outside 30 bits`);
    this.paging().map(iova, pa, length, prot);
  }

  /** @param {number} iova @param {number} length */
  unmap(iova, length) {
    const n = this.paging().unmap(iova, length);
    this.backend.tlb.invalidateRange(-1, this.id, iova, iova + length);
    return n;
  }

  /** @param {number} iova */
  iovaToPhys(iova) {
    return this.table?.lookup(iova)?.pa ?? -1;
  }

  free() {
    if (this.users > 0) throw new IommuError("EBUSY", `toy domain ${this.id} is attached`);
    if (this.freed) throw new IommuError("EINVAL", `toy domain ${this.id} is already freed`);
    this.freed = true;
    this.table?.destroy();
    this.backend.tlb.invalidateTag(this.id);
  }
}

/** @implements {Backend} */
export class ToyIommu {
  /** @param {import("@iommu-kit/core").BackendContext} ctx */
  constructor(ctx) {
    this.kind = "toy";
    this.name = ctx.name;
    this.memory = ctx.memory;
    this.tables = ctx.tables;
    this.tlb = new FastIotlb(8);
    /** @type {Map<number, { caps: import("@iommu-kit/core").Capabilities, domain: ToyDomain | null }>} */
    this.devices = new Map();
    this.nextId = 1;
    this.stats = { iotlbHits: 0, iotlbMisses: 0, configHits: 0, configMisses: 0, walks: 0, invalidations: 0 };
  }

  /** @param {import("@iommu-kit/core").DeviceSpec} spec */
  addDevice(spec) {
    if (this.devices.has(spec.rid)) throw new IommuError("EEXIST", `toy device ${spec.rid} exists`);
    this.devices.set(spec.rid, {
      domain: null,
      caps: {
        intents: ["rid"],
        maxPasidLog2: 0,
        pasidAssignment: "caller",
        inputAddressBits: 30,
        outputAddressBits: 52,
        pageSizeBitmap: 1n << 12n,
        formats: [toyFormat.name],
        features: {
          dirtyTracking: false,
          pasidExec: false,
          pasidPriv: false,
          atsNotSupported: true,
          nesting: false,
          coherent: true,
        },
        hwInfo: { type: "none" },
      },
    });
  }

  /** @param {number} rid */
  device(rid) {
    const d = this.devices.get(rid);
    if (!d) throw new IommuError("ENOENT", `no toy device ${rid}`);
    return d;
  }

  /** @param {number} rid */
  removeDevice(rid) {
    if (this.device(rid).domain) throw new IommuError("EBUSY", `toy device ${rid} is attached`);
    this.devices.delete(rid);
  }

  /** @param {number} rid */
  capabilities(rid) {
    return this.device(rid).caps;
  }

  reservedRegions() {
    return [];
  }

  /** @param {import("@iommu-kit/core").DomainRequest} req */
  allocDomain(req) {
    if (req.type === "nested") throw new IommuError("EOPNOTSUPP", "the toy IOMMU has no nesting");
    if (req.type !== "paging") return new ToyDomain(this, this.nextId++, req.type, null);
    if (req.flags?.nestParent || req.flags?.dirtyTracking || req.flags?.pasid) {
      throw new IommuError("EOPNOTSUPP", "the toy IOMMU supports no domain flags");
    }
    return new ToyDomain(this, this.nextId++, "paging", new PageTable(toyFormat, this.tables));
  }

  /** @param {number} rid @param {import("@iommu-kit/core").AttachIntent} intent @param {import("@iommu-kit/core").Domain} domain */
  attach(rid, intent, domain) {
    const d = this.device(rid);
    assertIntentAllowed(d.caps, intent);
    if (!(domain instanceof ToyDomain) || domain.backend !== this || domain.freed) {
      throw new IommuError("EINVAL", `domain ${domain.id} is not a live toy domain of ${this.name}`);
    }
    if (d.domain !== domain) {
      domain.users++;
      if (d.domain) d.domain.users--;
      d.domain = domain;
    }
    return {};
  }

  /** @param {number} rid @param {import("@iommu-kit/core").AttachIntent} intent */
  detach(rid, intent) {
    const d = this.device(rid);
    if (intent.kind !== "rid" || !d.domain) return;
    d.domain.users--;
    d.domain = null;
  }

  /** @param {number} rid @param {import("@iommu-kit/core").AttachIntent} intent */
  attached(rid, intent) {
    return intent.kind === "rid" ? this.device(rid).domain : null;
  }

  /**
   * @param {number} rid @param {number} pasid @param {number} iova @param {number} access
   * @param {import("@iommu-kit/core").Translation} out
   */
  translate(rid, pasid, iova, access, out) {
    const dom = pasid === NO_PASID ? (this.devices.get(rid)?.domain ?? null) : null;
    if (dom === null || dom.type === "blocked")
      return this.fault(out, "blocked", 3, "TOY_BLOCKED", rid, iova);
    if (dom.type === "identity") {
      out.pa = iova;
      out.perm = Perm.R | Perm.W;
      out.sizeLg2 = 12;
      out.fault = null;
      return true;
    }
    const need = permNeeded(access);
    const slot = this.tlb.lookup(dom.id, Math.floor(iova / 4096));
    let pa;
    let perm;
    if (slot >= 0) {
      this.stats.iotlbHits++;
      pa = this.tlb.pa(slot) + (iova % 4096);
      perm = this.tlb.meta(slot) & 7;
    } else {
      this.stats.iotlbMisses++;
      this.stats.walks++;
      // Walk: top table index iova[29:21], leaf index iova[20:12]; a bus error is a walk abort.
      if (iova < 0 || iova >= 2 ** 30) return this.fault(out, "translation", 1, "TOY_TRANSLATION", rid, iova);
      let table = /** @type {PageTable} */ (dom.table).root;
      for (let level = 1; level >= 0; level--) {
        const ea = table + (Math.floor(iova / 2 ** (12 + 9 * level)) % 512) * 8;
        const page = this.memory.readPage(Math.floor(ea / 4096));
        if (page === null) return this.fault(out, "walk-abort", 4, "TOY_WALK_ABORT", rid, iova);
        const lo = page[(ea % 4096) >>> 2];
        const hi = page[((ea % 4096) >>> 2) + 1];
        if ((lo & V) === 0) return this.fault(out, "translation", 1, "TOY_TRANSLATION", rid, iova);
        table = addressField(lo, hi, 51, 12);
        if (level === 0) {
          perm = toyFormat.leafPerm(lo, hi, 0);
          this.tlb.insert(dom.id, Math.floor(iova / 4096), table, iotlbMeta(perm, 12));
          pa = table + (iova % 4096);
        }
      }
    }
    if (((perm ?? 0) & need) !== need) return this.fault(out, "permission", 2, "TOY_PERMISSION", rid, iova);
    out.pa = /** @type {number} */ (pa);
    out.perm = /** @type {number} */ (perm);
    out.sizeLg2 = 12;
    out.fault = null;
    return true;
  }

  /**
   * @param {import("@iommu-kit/core").Translation} out
   * @param {import("@iommu-kit/core").FaultClass} cls @param {number} code @param {string} name
   * @param {number} rid @param {number} iova
   * @returns {false}
   */
  fault(out, cls, code, name, rid, iova) {
    out.fault = {
      class: cls,
      recorded: cls !== "blocked",
      vendor: { vendor: "toy", code, name, fields: { rid, iova: `0x${iova.toString(16)}` } },
    };
    return false;
  }

  counters() {
    return { ...this.stats };
  }

  flushCaches() {
    this.stats.invalidations++;
    this.tlb.clear();
  }
}

/** The factory, registered as "toy". */
/** @type {import("@iommu-kit/core").BackendFactory} */
export const toyBackend = {
  name: "toy",
  description: "Example third-party backend: a 2-level 4K toy table, rid intent only.",
  configSchema: { type: "object", additionalProperties: false, properties: {} },
  create: (ctx) => new ToyIommu(ctx),
};

export { Access, createTranslation };

/**
 * The conformance suite every backend runs with its own factory (in the spirit of
 * generic_pt's kunit_iommu_pt.h, run once per format). Runner-agnostic: give it
 * `describe` and `it` from vitest, jest, mocha or node:test.
 *
 * ```ts
 * import { describe, it } from "vitest";
 * import { runConformance } from "@iommu-kit/core/testing";
 * runConformance({ describe, it }, { name: "my-iommu", setup: () => ({ ... }) });
 * ```
 *
 * It checks: capability honesty (every advertised intent attaches, every other is
 * refused with EOPNOTSUPP and nothing changes); map then translate gives the exact PA
 * and permissions; unmapped IOVAs fault with class `translation`; detach leaves the
 * attach point blocked; replace is atomic; caches stay stale until invalidated and are
 * fresh after; PASID isolation; misuse errors; no table memory leaks.
 */

import { Access, accessFlags, Perm } from "../access.ts";
import { NO_PASID } from "../addresses.ts";
import type { Backend, DeviceSpec, Domain } from "../backend.ts";
import { isEmulatedAccess } from "../backend.ts";
import type { Capabilities } from "../capabilities.ts";
import { pageSizesLg2 } from "../capabilities.ts";
import type { ErrnoCode } from "../errors.ts";
import { hex, IommuError } from "../errors.ts";
import type { AttachIntent, IntentKind } from "../intent.ts";
import { INTENT_KINDS, Intent } from "../intent.ts";
import { createTranslation } from "../translation.ts";
import type { ConformanceFactory, ConformanceSetup, TestApi } from "./conformance-types.ts";

class ConformanceFailure extends Error {
  override name = "ConformanceFailure";
}

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new ConformanceFailure(message);
}

function eq<T>(actual: T, expected: T, what: string): void {
  const fmt = (v: unknown): string => (typeof v === "number" ? `${v} (${hex(v)})` : JSON.stringify(v));
  if (!Object.is(actual, expected))
    throw new ConformanceFailure(`${what}: expected ${fmt(expected)}, got ${fmt(actual)}`);
}

function throwsCode(fn: () => unknown, code: ErrnoCode, what: string): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError && e.code === code) return;
    throw new ConformanceFailure(
      `${what}: expected IommuError ${code}, got ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  throw new ConformanceFailure(`${what}: expected IommuError ${code}, but nothing was thrown`);
}

/** A device of the setup, its capabilities, and where its PASID DMA is translated. */
interface Dev {
  readonly spec: DeviceSpec;
  readonly caps: Capabilities;
}

interface Ctx {
  readonly s: ConformanceSetup;
  readonly b: Backend;
  readonly devs: readonly Dev[];
  /** Next free RAM address for mapping targets. */
  nextPa: number;
}

function start(factory: ConformanceFactory): Ctx {
  const s = factory.setup();
  for (const spec of s.devices) s.backend.addDevice(spec);
  const devs = s.devices.map((spec) => ({ spec, caps: s.backend.capabilities(spec.rid) }));
  check(devs.length > 0, "the factory must give at least one device");
  return {
    s,
    b: s.backend,
    devs,
    nextPa: s.ram.base + 2 ** 30 < s.ram.base + s.ram.size ? s.ram.base + 2 ** 30 : s.ram.base,
  };
}

function allocPa(c: Ctx, length: number, alignLg2 = 12): number {
  const align = 2 ** alignLg2;
  const pa = Math.ceil(c.nextPa / align) * align;
  check(pa + length <= c.s.ram.base + c.s.ram.size, "the setup's RAM is too small for the suite");
  c.nextPa = pa + length;
  return pa;
}

/** The intent the suite uses for a kind on a device. */
function intentFor(dev: Dev, kind: IntentKind, n = 1): AttachIntent {
  switch (kind) {
    case "rid":
      return Intent.rid;
    case "pasid":
      return dev.caps.pasidAssignment === "backend" ? Intent.autoPasid : Intent.pasid(n);
    case "rid-all-pasids":
      return Intent.ridAllPasids;
    case "emulated":
      return Intent.emulated;
  }
}

/** A paging domain suitable for `kind` on `dev` (undefined: the suite cannot build one generically). */
function domainFor(c: Ctx, dev: Dev, kind: IntentKind, factory: ConformanceFactory): Domain | undefined {
  if (kind === "rid-all-pasids") return factory.domainFor?.(c.s, dev.spec, kind);
  const made = factory.domainFor?.(c.s, dev.spec, kind);
  if (made !== undefined) return made;
  const pasidCapable = dev.caps.intents.includes("pasid");
  return c.b.allocDomain({
    type: "paging",
    rid: dev.spec.rid,
    ...(factory.pagingFormat === undefined || kind === "emulated" ? {} : { format: factory.pagingFormat }),
    flags: kind === "pasid" || (pasidCapable && kind === "rid") ? { pasid: true } : {},
  });
}

/** Translates on behalf of `dev` for the attach point of `intent`, with the PASID the attach reported. */
function xlate(
  c: Ctx,
  dev: Dev,
  intent: AttachIntent,
  pasid: number | undefined,
  iova: number,
  access: number,
) {
  const out = createTranslation();
  let backend = c.b;
  let rid = dev.spec.rid;
  let p = NO_PASID;
  if (intent.kind === "pasid") {
    p = pasid ?? (intent.pasid as number);
    if (dev.caps.pasidAssignment === "backend" && dev.spec.parent !== undefined) {
      backend = dev.spec.parent.backend;
      rid = dev.spec.parent.rid;
    }
  }
  const ok = backend.translate(rid, p, iova, access, out);
  return { ok, pa: out.pa, perm: out.perm, cls: out.fault?.class ?? null };
}

function baseIova(domain: Domain): number {
  // Well inside the aperture, 1 GiB aligned where the aperture allows it.
  const start = domain.aperture.start;
  const gig = Math.ceil(Math.max(start, 2 ** 30) / 2 ** 30) * 2 ** 30;
  return gig + 2 ** 30 <= domain.aperture.last ? gig : Math.ceil(start / 2 ** 21) * 2 ** 21 + 2 ** 21;
}

/**
 * Registers the conformance tests for one backend.
 */
export function runConformance(t: TestApi, factory: ConformanceFactory): void {
  t.describe(`conformance: ${factory.name}`, () => {
    t.it("reports capabilities that hold together", () => {
      const c = start(factory);
      for (const d of c.devs) {
        check(d.caps.intents.length > 0, `device ${d.spec.rid} lists no intent`);
        for (const k of d.caps.intents) check(INTENT_KINDS.includes(k), `unknown intent ${k}`);
        check(
          d.caps.maxPasidLog2 >= 0 && d.caps.maxPasidLog2 <= 20,
          `maxPasidLog2 ${d.caps.maxPasidLog2} out of [0,20]`,
        );
        if (d.caps.intents.includes("pasid"))
          check(d.caps.maxPasidLog2 > 0, "pasid listed with maxPasidLog2 = 0");
        check(d.caps.pageSizeBitmap > 0n, "no page sizes");
        check(d.caps.formats.length > 0, "no table formats");
        check(d.caps.inputAddressBits > 12 && d.caps.outputAddressBits > 12, "address widths below a page");
      }
    });

    t.it("attaches every advertised intent and refuses every other with EOPNOTSUPP, changing nothing", () => {
      const c = start(factory);
      for (const d of c.devs) {
        for (const kind of INTENT_KINDS) {
          const intent = intentFor(d, kind);
          if (d.caps.intents.includes(kind)) {
            const dom = domainFor(c, d, kind, factory);
            if (dom === undefined) continue;
            if (kind === "pasid") {
              // iommufd: a PASID attach needs a PASID-capable RID domain too when one is attached.
            }
            const res = c.b.attach(d.spec.rid, intent, dom);
            if (kind === "pasid" && d.caps.pasidAssignment === "backend") {
              check(typeof res.pasid === "number", "a backend-assigned PASID attach must report the PASID");
              c.b.detach(d.spec.rid, Intent.pasid(res.pasid!));
            } else {
              check(c.b.attached(d.spec.rid, intent) === dom, `attached(${kind}) does not report the domain`);
              c.b.detach(d.spec.rid, intent);
            }
            dom.free();
          } else {
            const dom = c.b.allocDomain({ type: "paging", rid: d.spec.rid });
            const before = c.s.tables.stats();
            throwsCode(
              () => c.b.attach(d.spec.rid, intent, dom),
              "EOPNOTSUPP",
              `attach ${kind} on rid ${d.spec.rid}`,
            );
            eq(
              c.b.attached(d.spec.rid, kind === "pasid" ? Intent.pasid(1) : intent),
              null,
              `attached(${kind}) after refusal`,
            );
            eq(c.s.tables.stats().blocks, before.blocks, "table blocks after a refused attach");
            dom.free();
          }
        }
      }
    });

    t.it("translates a mapping to the exact physical address and permissions", () => {
      const c = start(factory);
      for (const d of c.devs) {
        const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
        const dom = domainFor(c, d, kind, factory);
        if (dom === undefined) continue;
        const res = c.b.attach(d.spec.rid, intentFor(d, kind), dom);
        const iova = baseIova(dom);
        const pa = allocPa(c, 0x4000);
        dom.map(iova, pa, 0x2000, Perm.R | Perm.W);
        dom.map(iova + 0x2000, pa + 0x2000, 0x1000, Perm.R);
        for (const off of [0, 0x123, 0xfff, 0x1000, 0x1ffc]) {
          const r = xlate(c, d, intentFor(d, kind), res.pasid, iova + off, Access.WRITE);
          check(r.ok, `write at ${hex(iova + off)} faulted (${r.cls})`);
          eq(r.pa, pa + off, `pa of iova ${hex(iova + off)}`);
          check((r.perm & (Perm.R | Perm.W)) === (Perm.R | Perm.W), `perm at ${hex(iova + off)} lacks rw`);
        }
        const ro = xlate(c, d, intentFor(d, kind), res.pasid, iova + 0x2010, Access.READ);
        check(ro.ok, "read of the read-only page faulted");
        eq(ro.pa, pa + 0x2010, "pa of the read-only page");
        check((ro.perm & Perm.W) === 0, "read-only page grants write");
        const wr = xlate(c, d, intentFor(d, kind), res.pasid, iova + 0x2010, Access.WRITE);
        check(!wr.ok, "write to a read-only page succeeded");
        eq(wr.cls, "permission", "fault class of a write to a read-only page");
        const un = xlate(c, d, intentFor(d, kind), res.pasid, iova + 0x3000, Access.READ);
        check(!un.ok, "read of an unmapped page succeeded");
        eq(un.cls, "translation", "fault class of an unmapped page");
        eq(dom.iovaToPhys(iova + 0x1008), pa + 0x1008, "iovaToPhys");
        eq(dom.iovaToPhys(iova + 0x3000), -1, "iovaToPhys of an unmapped page");
      }
    });

    t.it("uses the largest page the alignment allows and reports its size", () => {
      const c = start(factory);
      const d = c.devs[0]!;
      const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
      const dom = domainFor(c, d, kind, factory);
      if (dom === undefined) return;
      const res = c.b.attach(d.spec.rid, intentFor(d, kind), dom);
      const sizes = pageSizesLg2(dom.pageSizeBitmap).filter((s) => s <= 21);
      const big = sizes[sizes.length - 1]!;
      const iova = baseIova(dom);
      const pa = allocPa(c, 2 * 2 ** big, big);
      dom.map(iova, pa, 2 * 2 ** big, Perm.R);
      const off = 2 ** big + 2 ** big / 2 + 0x34;
      const r = xlate(c, d, intentFor(d, kind), res.pasid, iova + off, Access.READ);
      check(r.ok, "read inside a large mapping faulted");
      eq(r.pa, pa + off, "pa inside a large mapping");
      eq(dom.unmap(iova, 2 * 2 ** big), 2 * 2 ** big, "bytes unmapped");
      const after = xlate(c, d, intentFor(d, kind), res.pasid, iova + off, Access.READ);
      eq(after.cls, "translation", "class after unmap (the backend invalidates on unmap)");
    });

    t.it("unmaps, frees emptied tables and leaks nothing", () => {
      const c = start(factory);
      const d = c.devs[0]!;
      const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
      const base = c.s.tables.stats();
      const dom = domainFor(c, d, kind, factory);
      if (dom === undefined) return;
      const afterAlloc = c.s.tables.stats();
      c.b.attach(d.spec.rid, intentFor(d, kind), dom);
      const afterAttach = c.s.tables.stats();
      const iova = baseIova(dom);
      const pa = allocPa(c, 0x10000);
      dom.map(iova, pa, 0x10000, Perm.R | Perm.W);
      // A second mapping in another top-level slot where the aperture allows it.
      const far =
        iova + 0x4000_0000 + 0xfff <= dom.aperture.last
          ? iova + 0x4000_0000
          : Math.floor((iova + dom.aperture.last) / 2 / 2 ** 21) * 2 ** 21;
      dom.map(far, pa, 0x1000, Perm.R);
      eq(dom.unmap(iova, 0x10000), 0x10000, "bytes unmapped");
      eq(dom.unmap(far, 0x1000), 0x1000, "bytes unmapped far away");
      eq(dom.unmap(iova, 0x1000), 0, "unmap of nothing");
      eq(
        c.s.tables.stats().blocks,
        afterAttach.blocks,
        "table blocks after mapping and unmapping everything",
      );
      c.b.detach(d.spec.rid, intentFor(d, kind).kind === "pasid" ? Intent.pasid(1) : intentFor(d, kind));
      dom.free();
      check(c.s.tables.stats().blocks <= afterAlloc.blocks, "freeing the domain did not return its tables");
      check(c.s.tables.stats().blocks >= base.blocks, "allocator accounting went below its starting point");
    });

    t.it("leaves a detached attach point blocked", () => {
      const c = start(factory);
      for (const d of c.devs) {
        const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
        const dom = domainFor(c, d, kind, factory);
        if (dom === undefined) continue;
        const intent = intentFor(d, kind);
        const res = c.b.attach(d.spec.rid, intent, dom);
        const iova = baseIova(dom);
        dom.map(iova, allocPa(c, 0x1000), 0x1000, Perm.R | Perm.W);
        check(xlate(c, d, intent, res.pasid, iova, Access.READ).ok, "read before detach faulted");
        c.b.detach(d.spec.rid, intent.kind === "pasid" ? Intent.pasid(res.pasid ?? 1) : intent);
        eq(xlate(c, d, intent, res.pasid, iova, Access.READ).cls, "blocked", "class after detach");
        eq(
          c.b.attached(d.spec.rid, intent.kind === "pasid" ? Intent.pasid(res.pasid ?? 1) : intent),
          null,
          "attached after detach",
        );
        c.b.detach(d.spec.rid, intent.kind === "pasid" ? Intent.pasid(res.pasid ?? 1) : intent);
      }
    });

    t.it("replaces atomically, and a refused replace keeps the old table", () => {
      const c = start(factory);
      const d = c.devs[0]!;
      const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
      const a = domainFor(c, d, kind, factory);
      const b = domainFor(c, d, kind, factory);
      if (a === undefined || b === undefined) return;
      const intent = intentFor(d, kind);
      const iova = baseIova(a);
      const paA = allocPa(c, 0x1000);
      const paB = allocPa(c, 0x1000);
      a.map(iova, paA, 0x1000, Perm.R);
      b.map(iova, paB, 0x1000, Perm.R);
      const res = c.b.attach(d.spec.rid, intent, a);
      eq(xlate(c, d, intent, res.pasid, iova, Access.READ).pa, paA, "pa through A");
      if (intent.kind !== "pasid" || d.caps.pasidAssignment === "caller") {
        c.b.attach(d.spec.rid, intent, b);
        eq(xlate(c, d, intent, res.pasid, iova, Access.READ).pa, paB, "pa through B after replace");
        // A domain of another backend instance is refused; B stays.
        const foreign = factory.setup();
        const alien = foreign.backend.allocDomain({ type: "paging" });
        let refused = false;
        try {
          c.b.attach(d.spec.rid, intent, alien);
        } catch (e) {
          refused = e instanceof IommuError;
        }
        check(refused, "attaching another backend's domain was not refused with an IommuError");
        eq(xlate(c, d, intent, res.pasid, iova, Access.READ).pa, paB, "pa through B after a refused replace");
        eq(c.b.attached(d.spec.rid, intent), b, "attached after a refused replace");
      }
    });

    t.it("keeps cached translations stale until invalidated, fresh after", () => {
      const c = start(factory);
      const d = c.devs[0]!;
      const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
      const dom = domainFor(c, d, kind, factory);
      if (dom === undefined) return;
      const intent = intentFor(d, kind);
      const res = c.b.attach(d.spec.rid, intent, dom);
      const iova = baseIova(dom);
      const pa1 = allocPa(c, 0x1000);
      const pa2 = allocPa(c, 0x1000);
      dom.map(iova, pa1, 0x1000, Perm.R | Perm.W);
      eq(xlate(c, d, intent, res.pasid, iova + 8, Access.READ).pa, pa1 + 8, "first translation");
      c.s.rewriteLeaf(dom, iova, pa2);
      eq(
        xlate(c, d, intent, res.pasid, iova + 8, Access.READ).pa,
        pa1 + 8,
        "stale translation without invalidation",
      );
      eq(dom.iovaToPhys(iova + 8), pa2 + 8, "the table itself holds the new address");
      c.s.invalidateLeaf(dom, iova);
      eq(
        xlate(c, d, intent, res.pasid, iova + 8, Access.READ).pa,
        pa2 + 8,
        "fresh translation after invalidation",
      );
      const k = c.b.counters();
      check(k.iotlbHits + k.iotlbMisses + k.walks > 0, "counters did not move");
    });

    t.it("isolates PASIDs from the RID and from each other", () => {
      const c = start(factory);
      const d = c.devs.find((x) => x.caps.intents.includes("pasid") && x.caps.pasidAssignment === "caller");
      if (d === undefined) return;
      const rd = domainFor(c, d, "rid", factory);
      const p1 = domainFor(c, d, "pasid", factory);
      const p2 = domainFor(c, d, "pasid", factory);
      if (rd === undefined || p1 === undefined || p2 === undefined) return;
      const iova = baseIova(rd);
      const [a, b1, b2] = [allocPa(c, 0x1000), allocPa(c, 0x1000), allocPa(c, 0x1000)];
      rd.map(iova, a, 0x1000, Perm.R);
      p1.map(iova, b1, 0x1000, Perm.R);
      p2.map(iova, b2, 0x1000, Perm.R);
      c.b.attach(d.spec.rid, Intent.rid, rd);
      c.b.attach(d.spec.rid, Intent.pasid(1), p1);
      const last = 2 ** d.caps.maxPasidLog2 - 1;
      c.b.attach(d.spec.rid, Intent.pasid(last), p2);
      eq(xlate(c, d, Intent.rid, undefined, iova, Access.READ).pa, a, "pa without PASID");
      eq(xlate(c, d, Intent.pasid(1), 1, iova, Access.READ).pa, b1, "pa with PASID 1");
      eq(xlate(c, d, Intent.pasid(last), last, iova, Access.READ).pa, b2, `pa with PASID ${last}`);
      const other = xlate(c, d, Intent.pasid(2), 2, iova, Access.READ);
      check(!other.ok, "an unattached PASID translated");
      c.b.detach(d.spec.rid, Intent.pasid(1));
      check(!xlate(c, d, Intent.pasid(1), 1, iova, Access.READ).ok, "a detached PASID still translates");
      eq(xlate(c, d, Intent.rid, undefined, iova, Access.READ).pa, a, "RID after a PASID detach");
      throwsCode(
        () => c.b.attach(d.spec.rid, Intent.pasid(2 ** d.caps.maxPasidLog2), p1),
        "EINVAL",
        "PASID beyond the width",
      );
    });

    t.it("refuses misuse with typed errors and changes nothing", () => {
      const c = start(factory);
      const d = c.devs[0]!;
      throwsCode(() => c.b.addDevice(d.spec), "EEXIST", "adding a device twice");
      throwsCode(() => c.b.capabilities(0x7fff_fff0), "ENOENT", "capabilities of an unknown rid");
      const kind: IntentKind = d.caps.intents.includes("rid") ? "rid" : d.caps.intents[0]!;
      const dom = domainFor(c, d, kind, factory);
      if (dom === undefined) return;
      const iova = baseIova(dom);
      const pa = allocPa(c, 0x2000);
      const min = 2 ** pageSizesLg2(dom.pageSizeBitmap)[0]!;
      throwsCode(() => dom.map(iova + 1, pa, min, Perm.R), "EINVAL", "misaligned iova");
      throwsCode(() => dom.map(iova, pa + 1, min, Perm.R), "EINVAL", "misaligned pa");
      throwsCode(() => dom.map(iova, pa, 0, Perm.R), "EINVAL", "zero length");
      dom.map(iova, pa, min, Perm.R);
      const blocks = c.s.tables.stats().blocks;
      throwsCode(() => dom.map(iova, pa + min, min, Perm.R), "EEXIST", "overlapping map");
      eq(c.s.tables.stats().blocks, blocks, "table blocks after a refused map");
      eq(dom.iovaToPhys(iova), pa, "mapping after a refused overlapping map");
      const intent = intentFor(d, kind);
      const res = c.b.attach(d.spec.rid, intent, dom);
      throwsCode(() => dom.free(), "EBUSY", "freeing an attached domain");
      c.b.detach(d.spec.rid, intent.kind === "pasid" ? Intent.pasid(res.pasid ?? 1) : intent);
      c.b.detach(d.spec.rid, intent.kind === "pasid" ? Intent.pasid(res.pasid ?? 1) : intent);
      dom.free();
    });

    t.it("offers emulated access when the emulated intent is listed", () => {
      const c = start(factory);
      const d = c.devs.find((x) => x.caps.intents.includes("emulated"));
      if (d === undefined) return;
      const dom = domainFor(c, d, "emulated", factory);
      if (dom === undefined) return;
      check(isEmulatedAccess(dom), "an emulated-intent domain does not implement EmulatedAccess");
      c.b.attach(d.spec.rid, Intent.emulated, dom);
      const iova = baseIova(dom);
      const pa = allocPa(c, 0x2000);
      dom.map(iova, pa, 0x2000, Perm.R | Perm.W);
      dom.write(iova + 0xffe, Uint8Array.of(1, 2, 3, 4));
      eq([...c.s.memory.read(pa + 0xffe, 4)].join(","), "1,2,3,4", "bytes written through the IOVA");
      eq([...dom.read(iova + 0xffe, 4)].join(","), "1,2,3,4", "bytes read through the IOVA");
      const pages = dom.pin(iova, 0x2000, true);
      eq(pages.join(","), `${pa},${pa + 0x1000}`, "pinned pages");
      eq(dom.pinCount(), 2, "pin count");
      dom.unpin(iova, 0x2000);
      eq(dom.pinCount(), 0, "pin count after unpin");
      const r = xlate(c, d, Intent.emulated, undefined, iova + 0x10, accessFlags("read"));
      check(r.ok && r.pa === pa + 0x10, "emulated translate");
    });
  });
}

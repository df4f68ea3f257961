/**
 * One negative test per fault reason the model raises (spec 7.1.3), each with the
 * exact fault record, plus positive walks of every translation type.
 */

import type { FaultClass } from "@iommu-kit/core";
import { Access, createTranslation, NO_PASID, Perm } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { decodeFaultRecord, Fr, faultReasonName } from "../src/format/fault-record.ts";
import { encodeFsEntry } from "../src/format/fs-pte.ts";
import { Pgtt } from "../src/format/pasid-entry.ts";
import { Reg } from "../src/format/registers.ts";
import { encodeRootEntry } from "../src/format/root-entry.ts";
import { bytesToWords } from "../src/internal/words.ts";
import type { Rig } from "./rig.ts";
import { CTX, DIR, FS0, PTBL, RAM, ROOT, rig, SID } from "./rig.ts";

const NOT_RAM = 0x8000_0000; // above the rig's 1 GiB of RAM: a bus error
const R = Access.READ;
const W = Access.WRITE;

interface Case {
  readonly name: string;
  readonly fr: number;
  readonly cls: FaultClass;
  readonly scalable: boolean;
  readonly setup: (r: Rig) => void;
  readonly pasid?: number;
  readonly iova?: number;
  readonly access?: number;
  readonly config?: Record<string, unknown>;
}

/** Legacy: context with a 4-level table at `root` mapping 0x1000 -> 0x5000 (rw). */
function legacyMapped(r: Rig, leaf: Parameters<Rig["ssMap"]>[3] = {}): number {
  const root = r.page();
  r.legacyContext({ slptptr: root });
  r.ssMap(root, 4, 0x1000, { addr: 0x5000, ...leaf });
  return root;
}

/** Scalable second stage for RID_PASID. */
function ssMapped(
  r: Rig,
  leaf: Parameters<Rig["ssMap"]>[3] = {},
  pe: Parameters<Rig["pasidEntry"]>[1] = {},
): number {
  const root = r.page();
  r.scalableContext();
  r.pasidEntry(0, { ssptptr: root, ...pe });
  r.ssMap(root, 4, 0x1000, { addr: 0x5000, ...leaf });
  return root;
}

/** Scalable first stage for PASID 5. */
function fsMapped(
  r: Rig,
  leaf: Parameters<Rig["fsMap"]>[3] = {},
  pe: Parameters<Rig["pasidEntry"]>[1] = {},
): number {
  const root = r.page();
  r.scalableContext();
  r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root, ...pe });
  r.fsMap(root, 4, 0x1000, { addr: 0x5000, ...leaf });
  return root;
}

/** Nested: SS identity-maps [0, 1 GiB) with one 1G page; FS (PASID 5) at `fsRoot`. */
function nested(
  r: Rig,
  ssLeaf: Parameters<Rig["ssMap"]>[3] = {},
  pe: Parameters<Rig["pasidEntry"]>[1] = {},
): {
  ss: number;
  fs: number;
} {
  const ss = r.page();
  const fs = r.page();
  r.scalableContext();
  r.ssMap(ss, 4, 0, { addr: 0, ...ssLeaf }, 2);
  r.pasidEntry(5, { pgtt: Pgtt.NESTED, ssptptr: ss, fsptptr: fs, ...pe });
  r.fsMap(fs, 4, 0x1000, { addr: 0x5000 });
  return { ss, fs };
}

const cases: Case[] = [
  // ---- legacy
  { name: "root entry not present", fr: 0x1, cls: "blocked", scalable: false, setup: () => {} },
  {
    name: "context entry not present",
    fr: 0x2,
    cls: "blocked",
    scalable: false,
    setup: (r) => r.legacyContext({ present: false }),
  },
  {
    name: "context TT = 11b (reserved)",
    fr: 0x3,
    cls: "bad-config",
    scalable: false,
    setup: (r) => r.legacyContext({ tt: 3, slptptr: r.page() }),
  },
  {
    name: "context AW not in SAGAW",
    fr: 0x3,
    cls: "bad-config",
    scalable: false,
    setup: (r) => r.legacyContext({ aw: 1, slptptr: r.page() }),
  },
  {
    name: "address beyond the 4-level AGAW",
    fr: 0x4,
    cls: "translation",
    scalable: false,
    setup: (r) => legacyMapped(r),
    iova: 2 ** 48,
  },
  {
    name: "write to a read-only page",
    fr: 0x5,
    cls: "permission",
    scalable: false,
    setup: (r) => legacyMapped(r, { w: false }),
    access: W,
  },
  {
    name: "read of a write-only page",
    fr: 0x6,
    cls: "permission",
    scalable: false,
    setup: (r) => legacyMapped(r, { r: false }),
  },
  {
    name: "read of a not-present page (R=W=0, reported as no read)",
    fr: 0x6,
    cls: "translation",
    scalable: false,
    setup: (r) => legacyMapped(r),
    iova: 0x2000,
  },
  {
    name: "next page table pointer is not RAM",
    fr: 0x7,
    cls: "walk-abort",
    scalable: false,
    setup: (r) => {
      const root = r.page();
      r.legacyContext({ slptptr: root });
      r.ssMap(root, 4, 0x1000, { addr: 0x5000 });
      r.w64(root, (BigInt(NOT_RAM) | 3n) & ~0xff8n);
    },
  },
  {
    name: "root table is not RAM",
    fr: 0x8,
    cls: "walk-abort",
    scalable: false,
    setup: (r) => {
      r.hw.rta = NOT_RAM;
    },
  },
  {
    name: "context table pointer is not RAM",
    fr: 0x9,
    cls: "walk-abort",
    scalable: false,
    setup: (r) => {
      const [lo] = encodeRootEntry({ present: true, ctp: NOT_RAM });
      r.w64(ROOT, lo);
    },
  },
  {
    name: "reserved bit in the root entry",
    fr: 0xa,
    cls: "bad-config",
    scalable: false,
    setup: (r) => {
      r.legacyContext({ slptptr: r.page() });
      r.w64(ROOT, r.memory.read64(ROOT) | 2n);
    },
  },
  {
    name: "reserved bit in the context entry",
    fr: 0xb,
    cls: "bad-config",
    scalable: false,
    setup: (r) => {
      r.legacyContext({ slptptr: r.page() });
      r.w64(CTX + SID * 16, r.memory.read64(CTX + SID * 16) | 0x10n);
    },
  },
  {
    name: "PS set in a PML4E (reserved)",
    fr: 0xc,
    cls: "bad-config",
    scalable: false,
    setup: (r) => {
      const root = legacyMapped(r);
      r.w64(root, r.memory.read64(root) | 0x80n);
    },
  },
  {
    name: "output in the interrupt address range",
    fr: 0xe,
    cls: "permission",
    scalable: false,
    setup: (r) => legacyMapped(r, { addr: 0xfee00000 }),
  },
  {
    name: "request with PASID in legacy mode",
    fr: 0x31,
    cls: "blocked",
    scalable: false,
    setup: (r) => legacyMapped(r),
    pasid: 3,
  },
  // ---- scalable: root / context
  {
    name: "RTADDR.TTM = 10b (reserved)",
    fr: 0x30,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      r.hw.ttm = 2;
    },
  },
  {
    name: "SM root table is not RAM",
    fr: 0x38,
    cls: "walk-abort",
    scalable: true,
    setup: (r) => {
      r.hw.rta = NOT_RAM;
    },
  },
  { name: "SM root entry not present", fr: 0x39, cls: "blocked", scalable: true, setup: () => {} },
  {
    name: "SM root entry reserved bit",
    fr: 0x3a,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      ssMapped(r);
      r.w64(ROOT, r.memory.read64(ROOT) | 4n);
    },
  },
  {
    name: "SM context table is not RAM",
    fr: 0x40,
    cls: "walk-abort",
    scalable: true,
    setup: (r) => {
      r.w64(ROOT, BigInt(NOT_RAM) | 1n);
    },
  },
  {
    name: "SM context entry not present",
    fr: 0x41,
    cls: "blocked",
    scalable: true,
    setup: (r) => r.scalableContext({ present: false }),
  },
  {
    name: "SM context entry reserved bit",
    fr: 0x42,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      ssMapped(r);
      const at = CTX + SID * 32;
      r.w64(at, r.memory.read64(at) | 0x20n);
    },
  },
  {
    name: "PASIDE clear for a request with PASID",
    fr: 0x45,
    cls: "blocked",
    scalable: true,
    setup: (r) => r.scalableContext({ paside: false }),
    pasid: 5,
  },
  {
    name: "PASID beyond the directory size (PDTS)",
    fr: 0x46,
    cls: "bad-config",
    scalable: true,
    setup: (r) => r.scalableContext({ pdts: 0 }),
    pasid: 128 * 64,
  },
  {
    name: "RID_PASID beyond the directory size",
    fr: 0x48,
    cls: "bad-config",
    scalable: true,
    setup: (r) => r.scalableContext({ pdts: 0, ridPasid: 128 * 64 }),
  },
  // ---- scalable: PASID directory / table
  {
    name: "PASID directory is not RAM",
    fr: 0x50,
    cls: "walk-abort",
    scalable: true,
    setup: (r) => r.scalableContext({ pasidDirPtr: NOT_RAM }),
  },
  {
    name: "PASID directory entry not present",
    fr: 0x51,
    cls: "blocked",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.w64(DIR, 0n);
    },
  },
  {
    name: "PASID directory entry reserved bit",
    fr: 0x52,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.w64(DIR, r.memory.read64(DIR) | 4n);
    },
  },
  {
    name: "PASID table is not RAM",
    fr: 0x58,
    cls: "walk-abort",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.w64(DIR, BigInt(NOT_RAM) | 1n);
    },
  },
  {
    name: "PASID entry not present",
    fr: 0x59,
    cls: "blocked",
    scalable: true,
    setup: (r) => r.scalableContext(),
  },
  {
    name: "PASID entry reserved bit (word 3)",
    fr: 0x5a,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      ssMapped(r);
      r.w64(PTBL + 24, 1n);
    },
  },
  {
    name: "PASID entry PGTT = 000b",
    fr: 0x5b,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.pasidEntry(0, { pgtt: 0, ssptptr: r.page() });
    },
  },
  {
    name: "PASID entry FSPM = 10b",
    fr: 0x5b,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fspm: 2, fsptptr: r.page() });
    },
    pasid: 5,
  },
  {
    name: "supervisor request with SRE clear",
    fr: 0x5d,
    cls: "blocked",
    scalable: true,
    setup: (r) => fsMapped(r, {}, { sre: false }),
    pasid: 5,
    access: R | Access.PRIV,
  },
  // ---- first stage
  {
    name: "first-stage table is not RAM",
    fr: 0x70,
    cls: "walk-abort",
    scalable: true,
    setup: (r) => {
      const root = fsMapped(r);
      r.w64(root, encodeFsEntry({ ...FS0, p: true, rw: true, us: true, addr: NOT_RAM }));
    },
    pasid: 5,
  },
  {
    name: "first-stage entry not present",
    fr: 0x71,
    cls: "translation",
    scalable: true,
    setup: (r) => fsMapped(r),
    pasid: 5,
    iova: 0x2000,
  },
  {
    name: "first-stage reserved bit (PS in PML4E)",
    fr: 0x72,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      const root = fsMapped(r);
      r.w64(root, r.memory.read64(root) | 0x80n);
    },
    pasid: 5,
  },
  {
    name: "FSPTPTR is not RAM",
    fr: 0x73,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: NOT_RAM });
    },
    pasid: 5,
  },
  // ---- nested
  {
    name: "nested: first-stage table GPA beyond the second-stage width",
    fr: 0x74,
    cls: "address-size",
    scalable: true,
    setup: (r) => {
      const { fs } = nested(r);
      r.w64(fs, encodeFsEntry({ ...FS0, p: true, rw: true, us: true, a: true, addr: 2 ** 48 }));
    },
    pasid: 5,
  },
  {
    name: "nested: second stage denies read of the FS root table",
    fr: 0x75,
    cls: "permission",
    scalable: true,
    setup: (r) => nested(r, { r: false }),
    pasid: 5,
  },
  {
    name: "nested: second stage denies read of a lower FS table",
    fr: 0x76,
    cls: "permission",
    scalable: true,
    setup: (r) => {
      const { fs } = nested(r);
      // A second SS table: the FS root page readable, the next FS table page write-only.
      const ss2 = r.page();
      r.ssMap(ss2, 4, fs, { addr: fs });
      const l2 = Number((r.memory.read64(fs) >> 12n) & 0xffffffffffn) * 4096;
      r.ssMap(ss2, 4, l2, { addr: l2, r: false });
      r.pasidEntry(5, { pgtt: Pgtt.NESTED, ssptptr: ss2, fsptptr: fs });
    },
    pasid: 5,
  },
  {
    name: "nested: A/D update of a FS entry on a read-only SS page",
    fr: 0x77,
    cls: "permission",
    scalable: true,
    setup: (r) => {
      const { fs } = nested(r, { w: false });
      r.w64(fs, r.memory.read64(fs) & ~0x20n);
    },
    pasid: 5,
  },
  // ---- second stage (scalable)
  {
    name: "SM second-stage table is not RAM",
    fr: 0x78,
    cls: "walk-abort",
    scalable: true,
    setup: (r) => {
      const root = ssMapped(r);
      r.w64(root, BigInt(NOT_RAM) | 3n);
    },
  },
  {
    name: "SM second-stage entry not present (QEMU reports 0x6 here; the spec says 0x79)",
    fr: 0x79,
    cls: "translation",
    scalable: true,
    setup: (r) => ssMapped(r),
    iova: 0x2000,
  },
  {
    name: "SM second-stage reserved bit (QEMU reports 0xC here)",
    fr: 0x7a,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      const root = ssMapped(r);
      r.w64(root, r.memory.read64(root) | 0x80n);
    },
  },
  {
    name: "SSPTPTR beyond the host address width",
    fr: 0x7b,
    cls: "bad-config",
    scalable: true,
    setup: (r) => {
      r.scalableContext();
      r.pasidEntry(0, { ssptptr: 2 ** 49 });
    },
  },
  {
    name: "second-stage A/D update with page-walk snoop off",
    fr: 0x7c,
    cls: "access-flag",
    scalable: true,
    setup: (r) => ssMapped(r, {}, { ssade: true, pwsnp: false }),
  },
  {
    name: "first-stage address not canonical",
    fr: 0x80,
    cls: "translation",
    scalable: true,
    setup: (r) => fsMapped(r),
    pasid: 5,
    iova: 2 ** 47,
  },
  {
    name: "user request to a supervisor page",
    fr: 0x81,
    cls: "permission",
    scalable: true,
    setup: (r) => fsMapped(r, { us: false }),
    pasid: 5,
  },
  {
    name: "instruction fetch from an XD page",
    fr: 0x82,
    cls: "permission",
    scalable: true,
    setup: (r) => fsMapped(r, { xd: true }),
    pasid: 5,
    access: R | Access.EXEC,
  },
  {
    name: "SM address beyond the second-stage width (QEMU reports 0x4)",
    fr: 0x83,
    cls: "translation",
    scalable: true,
    setup: (r) => ssMapped(r),
    iova: 2 ** 48,
  },
  {
    name: "nested: final GPA beyond the second-stage width",
    fr: 0x84,
    cls: "address-size",
    scalable: true,
    setup: (r) => {
      const { fs } = nested(r);
      r.fsMap(fs, 4, 0x3000, { addr: 2 ** 49 });
    },
    pasid: 5,
    iova: 0x3000,
  },
  {
    name: "SM write to a read-only page (QEMU reports 0x5)",
    fr: 0x85,
    cls: "permission",
    scalable: true,
    setup: (r) => ssMapped(r, { w: false }),
    access: W,
  },
  {
    name: "SM read of a write-only page (QEMU reports 0x6)",
    fr: 0x86,
    cls: "permission",
    scalable: true,
    setup: (r) => ssMapped(r, { r: false }),
  },
  {
    name: "SM output in the interrupt address range",
    fr: 0x87,
    cls: "permission",
    scalable: true,
    setup: (r) => ssMapped(r, { addr: 0xfee01000 }),
  },
  {
    name: "first-stage A/D update with page-walk snoop off",
    fr: 0x90,
    cls: "access-flag",
    scalable: true,
    setup: (r) => fsMapped(r, { a: false }, { pwsnp: false }),
    pasid: 5,
  },
];

describe("fault reasons, one per code, with the exact record", () => {
  for (const c of cases) {
    it(`0x${c.fr.toString(16).padStart(2, "0")}: ${c.name}`, () => {
      const r = rig({ mode: c.scalable ? "scalable" : "legacy", ...(c.config ?? {}) });
      c.setup(r);
      const out = createTranslation();
      const pasid = c.pasid ?? NO_PASID;
      const iova = c.iova ?? 0x1234;
      const access = c.access ?? R;
      expect(r.hw.translate(SID, pasid, iova, access, out)).toBe(false);
      const f = out.fault!;
      expect(f.vendor.code).toBe(c.fr);
      expect(f.vendor.name).toBe(faultReasonName(c.fr));
      expect(f.class).toBe(c.cls);
      expect(f.recorded).toBe(true);
      const rec = decodeFaultRecord(bytesToWords(f.vendor.raw!));
      expect(rec).toEqual({
        fi: iova - (iova % 4096),
        sid: SID,
        t2: false,
        priv: pasid !== NO_PASID && (access & Access.PRIV) !== 0,
        exe: pasid !== NO_PASID && (access & Access.EXEC) !== 0,
        pp: pasid !== NO_PASID,
        fr: c.fr,
        pv: pasid === NO_PASID ? 0 : pasid,
        at: 0,
        t1: (access & W) === 0,
        f: true,
      });
      // The same record sits in FRCD 0, FSTS.PPF is set and FRI names it.
      const hw = r.hw;
      expect(hw.readRegister(hw.frcdOffset, 8)).toBe(rec.fi === 0 ? 0n : BigInt(rec.fi));
      expect(decodeFaultRecord([hw.frcd[0]!, hw.frcd[1]!])).toEqual(rec);
      expect(Number(hw.readRegister(Reg.FSTS, 4)) & 2).toBe(2);
      expect((hw.fsts >>> 8) & 0xff).toBe(0);
    });
  }
});

describe("successful walks", () => {
  it("legacy 4-level 4K page with exact address and rights", () => {
    const r = rig({ mode: "legacy" });
    legacyMapped(r, { w: false });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1abc, R, out)).toBe(true);
    expect(out.pa).toBe(0x5abc);
    expect(out.perm).toBe(Perm.R | Perm.X);
    expect(out.sizeLg2).toBe(12);
  });

  it("legacy 3-level walk (AW = 1) with a 2 MiB page", () => {
    const r = rig({ mode: "legacy", sagaw: 0b0110 });
    const root = r.page();
    r.legacyContext({ slptptr: root, aw: 1 });
    r.ssMap(root, 3, 0x4000_0000, { addr: 0x0060_0000 }, 1);
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x4001_2345, W, out)).toBe(true);
    expect(out.pa).toBe(0x0061_2345);
    expect(out.sizeLg2).toBe(21);
  });

  it("legacy pass-through (TT = 10b) is untranslated", () => {
    const r = rig({ mode: "legacy" });
    r.legacyContext({ tt: 2 });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x1234_5678, W, out)).toBe(true);
    expect(out.pa).toBe(0x1234_5678);
  });

  it("translation disabled: DMA passes untranslated", () => {
    const r = rig({ mode: "legacy" });
    r.hw.writeRegister(Reg.GCMD, 0n, 4);
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0xdead_b000, W, out)).toBe(true);
    expect(out.pa).toBe(0xdead_b000);
  });

  it("scalable second stage 1 GiB page through RID_PASID", () => {
    const r = rig();
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(0, { ssptptr: root });
    r.ssMap(root, 4, 0x4000_0000, { addr: 0 }, 2);
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 0x4abc_def0, R, out)).toBe(true);
    expect(out.pa).toBe(0x0abc_def0);
    expect(out.sizeLg2).toBe(30);
  });

  it("scalable second stage 5-level (AW = 3)", () => {
    const r = rig();
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(0, { ssptptr: root, aw: 3 });
    r.ssMap(root, 5, 2 ** 50, { addr: 0x7000 });
    const out = createTranslation();
    expect(r.hw.translate(SID, NO_PASID, 2 ** 50 + 0x10, R, out)).toBe(true);
    expect(out.pa).toBe(0x7010);
  });

  it("first stage 5-level with a 1 GiB page", () => {
    const r = rig();
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(9, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root, fspm: 1 });
    r.fsMap(root, 5, 2 ** 52, { addr: 0x4000_0000 }, 2);
    const out = createTranslation();
    expect(r.hw.translate(SID, 9, 2 ** 52 + 0x123, W, out)).toBe(true);
    expect(out.pa).toBe(0x4000_0123);
    expect(out.sizeLg2).toBe(30);
  });

  it("first stage sets A on every level and D on the leaf for a write", () => {
    const r = rig();
    const root = r.page();
    r.scalableContext();
    r.pasidEntry(5, { pgtt: Pgtt.FIRST_STAGE, fsptptr: root });
    const path = r.fsMap(root, 4, 0x1000, { addr: 0x5000, a: false, d: false }, 0, { a: false });
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x1000, R, out)).toBe(true);
    for (const ea of path) expect(r.memory.read64(ea) & 0x20n).toBe(0x20n);
    expect(r.memory.read64(path[3]!) & 0x40n).toBe(0n);
    expect(r.hw.translate(SID, 5, 0x1000, W, out)).toBe(true);
    expect(r.memory.read64(path[3]!) & 0x40n).toBe(0x40n);
  });

  it("supervisor writes ignore R/W unless WPE", () => {
    const r = rig();
    fsMapped(r, { rw: false });
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x1000, W | Access.PRIV, out)).toBe(true);
    expect(r.hw.translate(SID, 5, 0x1000, W, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.SM_NO_WRITE);
    const r2 = rig();
    fsMapped(r2, { rw: false }, { wpe: true });
    expect(r2.hw.translate(SID, 5, 0x1000, W | Access.PRIV, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.SM_NO_WRITE);
  });

  it("nested: FS tables through the second stage, output through it too", () => {
    const r = rig();
    const ss = r.page();
    const fs = r.page();
    r.scalableContext();
    // SS: GPA [0, 1 GiB) -> HPA identity, except GPA 0x3000_0000 (2M) -> HPA 0x0800_0000.
    r.ssMap(ss, 4, 0, { addr: 0 }, 2);
    r.pasidEntry(5, { pgtt: Pgtt.NESTED, ssptptr: ss, fsptptr: fs });
    r.fsMap(fs, 4, 0x7000_0000, { addr: 0x0123_4000 });
    const out = createTranslation();
    expect(r.hw.translate(SID, 5, 0x7000_0042, R, out)).toBe(true);
    expect(out.pa).toBe(0x0123_4042);
    expect(out.sizeLg2).toBe(12);
  });

  it("nested 5-level first stage (QEMU supports neither)", () => {
    const r = rig();
    const ss = r.page();
    const fs = r.page();
    r.scalableContext();
    r.ssMap(ss, 4, 0, { addr: 0 }, 2);
    r.pasidEntry(6, { pgtt: Pgtt.NESTED, ssptptr: ss, fsptptr: fs, fspm: 1 });
    r.fsMap(fs, 5, 2 ** 51, { addr: 0x0200_0000 }, 1);
    const out = createTranslation();
    expect(r.hw.translate(SID, 6, 2 ** 51 + 0x1234, W, out)).toBe(true);
    expect(out.pa).toBe(0x0200_1234);
    expect(out.sizeLg2).toBe(21);
  });

  it("second-stage execute: with SSEE fetches need X, without it they need R", () => {
    const withX = rig();
    const root0 = ssMapped(withX, { x: false }, { ssee: true });
    const out = createTranslation();
    expect(withX.hw.translate(SID, NO_PASID, 0x1000, R, out)).toBe(true);
    expect(out.perm).toBe(Perm.R | Perm.W);
    withX.pasidEntry(3, { ssptptr: root0, ssee: true });
    expect(withX.hw.translate(SID, 3, 0x1000, R | Access.EXEC, out)).toBe(false);
    expect(out.fault!.vendor.code).toBe(Fr.NO_EXECUTE);
    const x = rig();
    const root = x.page();
    x.scalableContext();
    x.pasidEntry(3, { ssptptr: root, ssee: true });
    x.ssMap(root, 4, 0x1000, { addr: 0x5000, x: true });
    // Table entries written by the rig carry R|W but not X: rights are cumulative.
    expect(x.hw.translate(SID, 3, 0x1000, R | Access.EXEC, out)).toBe(false);
    const y = rig();
    const root2 = y.page();
    y.scalableContext();
    y.pasidEntry(3, { ssptptr: root2, ssee: false });
    y.ssMap(root2, 4, 0x1000, { addr: 0x5000 });
    expect(y.hw.translate(SID, 3, 0x1000, R | Access.EXEC, out)).toBe(true);
    expect(out.perm).toBe(Perm.R | Perm.W | Perm.X);
  });

  it("upper-half devfn uses the root entry's upper context table", () => {
    const r = rig();
    const root = r.page();
    const sid = 0x00a0;
    r.scalableContext({}, sid);
    r.pasidEntry(0, { ssptptr: root });
    r.ssMap(root, 4, 0x1000, { addr: 0x9000 });
    const out = createTranslation();
    expect(r.hw.translate(sid, NO_PASID, 0x1004, R, out)).toBe(true);
    expect(out.pa).toBe(0x9004);
  });

  it("RAM bound sanity: the rig has 1 GiB", () => {
    expect(RAM).toBe(2 ** 30);
  });
});

/**
 * VT-d side of the differential harness: scenario generators (the project's own driver
 * half, random spec-valid tables, hostile mutations), the QEMU rig (q35 + intel-iommu +
 * two edu DMA engines), and the model's prediction through `vtdFromRegisters`.
 *
 * Tables follow the VT-d spec (rev 4.x): root entry 9.1, legacy context entry 9.3,
 * scalable context entry 9.4, PASID directory entry 9.5, PASID entry 9.6, second-stage
 * paging entries 9.8; fault recording 7.2 / 10.4.14.
 */

import { accessFlags, createTranslation, NO_PASID, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { createVtd, Reg, vtdFromRegisters } from "@iommu-kit/vtd";
import type { FaultRecordObs, Image, Predicted, Req } from "./common.ts";
import { get64, page, poolImage, put64, type Rng } from "./common.ts";
import { QTest } from "./qtest.ts";

export const X86 = {
  ramSize: 512 * 1024 * 1024,
  /** Table region: every table a scenario writes lives here. */
  tables: 0x0100_0000,
  tablesSize: 0x0100_0000,
  /** Data pool: two 2 MiB regions of signatures. */
  pool: 0x0400_0000,
  poolSize: 0x0040_0000,
  /** Token page and readback page per edu. */
  // Far from the tables, so a flipped table pointer does not land on harness data.
  scratch: 0x1f00_0000,
  dmar: 0xfed9_0000,
  /** edu BARs, one MiB each. */
  bars: [0xfe00_0000, 0xfe10_0000],
  /** edu devfns: 4.0 (context table lower half) and 0x11.0 (upper half in scalable mode). */
  devfns: [0x20, 0x88],
  aw: 48,
} as const;

/** DMAR register offsets (VT-d 11.4). */
const R = { CAP: 0x08, ECAP: 0x10, GCMD: 0x18, GSTS: 0x1c, RTADDR: 0x20, FSTS: 0x34, FRCD: 0x220 } as const;
const GCMD_TE = 1 << 31;
const GCMD_SRTP = 1 << 30;

export type VtdMode = "legacy" | "scalable";
export type GenName = "driver" | "random" | "hostile";

/** A leaf mapping a scenario made (for choosing request addresses). */
interface Leaf {
  readonly sid: number;
  readonly iova: number;
  readonly size: number;
  readonly pa: number;
}

/** An 8-byte table word a hostile mutation may change. */
interface Word {
  readonly pa: number;
  readonly what: string;
}

export interface VtdScenario {
  readonly gen: GenName;
  readonly mode: VtdMode;
  readonly img: Image;
  readonly rtaddr: bigint;
  readonly reqs: Req[];
  /** Hostile mutations applied, as "what@pa: old -> new". */
  readonly mutations: string[];
}

// ------------------------------------------------------------------ table writer

/** Bump allocator of 4 KiB table pages inside the table region. */
class Pages {
  next: number = X86.tables;
  alloc(img: Image): number {
    const pa = this.next;
    this.next += 4096;
    page(img, pa);
    return pa;
  }
}

/** The interrupt address range (VT-d 3.15): never a request IOVA. */
function inInterruptRange(iova: number): boolean {
  return iova >= 0xfee0_0000 && iova <= 0xfeef_ffff;
}

/** A second-stage table tree writer (VT-d 9.8). */
class SsTables {
  readonly top: number;
  readonly img: Image;
  readonly pages: Pages;
  readonly levels: number;
  readonly words: Word[];
  readonly rng: Rng;
  constructor(img: Image, pages: Pages, levels: number, words: Word[], rng: Rng) {
    this.img = img;
    this.pages = pages;
    this.levels = levels;
    this.words = words;
    this.rng = rng;
    this.top = pages.alloc(img);
  }

  /** Maps one leaf at `leafLevel` (1 = 4K, 2 = 2M, 3 = 1G); false when it collides. */
  map(iova: number, leafLevel: number, pa: number, leafBits: bigint): boolean {
    let table = this.top;
    for (let level = this.levels; level > leafLevel; level--) {
      const idx = Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512;
      const at = table + idx * 8;
      const e = get64(this.img, at);
      if (e === 0n) {
        const next = this.pages.alloc(this.img);
        // Non-leaf permissions are ANDed down the walk (9.8): mostly RW, sometimes one of them.
        const perm = this.rng.chance(0.9) ? 3n : this.rng.pick([1n, 2n]);
        put64(this.img, at, BigInt(next) | perm);
        this.words.push({ pa: at, what: `SL L${level} table` });
        table = next;
      } else {
        if ((e & 0x80n) !== 0n) return false; // a leaf already sits here
        table = Number(e & 0x000f_ffff_ffff_f000n);
      }
    }
    const idx = Math.floor(iova / 2 ** (12 + 9 * (leafLevel - 1))) % 512;
    const at = table + idx * 8;
    if (get64(this.img, at) !== 0n) return false;
    put64(this.img, at, BigInt(pa) | leafBits | (leafLevel > 1 ? 0x80n : 0n));
    this.words.push({ pa: at, what: `SL L${leafLevel} leaf` });
    return true;
  }
}

/** Random leaves into a second-stage tree; returns them. */
function randomLeaves(rng: Rng, t: SsTables, sid: number, count: number, sllps: number): Leaf[] {
  const out: Leaf[] = [];
  const span = 2 ** (12 + 9 * t.levels);
  for (let i = 0; i < count * 3 && out.length < count; i++) {
    let leafLevel = 1;
    const roll = rng.int(10);
    if (roll < 2 && sllps & 1) leafLevel = 2;
    else if (roll < 3 && sllps & 2) leafLevel = 3;
    const size = 2 ** (12 + 9 * (leafLevel - 1));
    // Cluster IOVAs so tables are shared: a few random 1 GiB regions, low addresses likelier.
    const region = rng.chance(0.5) ? rng.int(4) : rng.int(span / 2 ** 30);
    const iova = region * 2 ** 30 + (leafLevel === 3 ? 0 : rng.int(2 ** 30 / size) * size);
    if (iova >= span) continue;
    const pa =
      leafLevel === 1
        ? X86.pool + rng.int(X86.poolSize / 4096) * 4096
        : leafLevel === 2
          ? X86.pool + rng.int(X86.poolSize / size) * size
          : 0;
    // R/W in any combination; R = W = 0 is a not-present entry. Ignored bits 52-61 and 63 (9.8).
    let bits = BigInt(rng.pick([1, 2, 3, 3, 3, 0]));
    if (rng.chance(0.1)) bits |= BigInt(rng.int(1024)) << 52n;
    if (rng.chance(0.05)) bits |= 1n << 63n;
    if (t.map(iova, leafLevel, pa, bits)) out.push({ sid, iova, size, pa });
  }
  return out;
}

// ------------------------------------------------------------------ generators

interface Built {
  img: Image;
  rtaddr: bigint;
  leaves: Leaf[];
  words: Word[];
}

/** Random spec-valid tables (the harness writes them from the spec). */
function buildRandom(rng: Rng, mode: VtdMode, cap: bigint): Built {
  const img: Image = new Map();
  const pages = new Pages();
  const words: Word[] = [];
  const leaves: Leaf[] = [];
  const sllps = Number((cap >> 34n) & 0xfn);
  const sagaw = Number((cap >> 8n) & 0x1fn);
  const aws = [1, 2, 3].filter((a) => sagaw & (1 << a));
  const root = pages.alloc(img);
  if (mode === "legacy") {
    const ctx = pages.alloc(img);
    put64(img, root, BigInt(ctx) | 1n);
    words.push({ pa: root, what: "root lo" });
    for (const devfn of X86.devfns) {
      const aw = rng.pick(aws);
      const t = new SsTables(img, pages, aw + 2, words, rng);
      const tt = rng.chance(0.15) ? 2n : 0n;
      const fpd = rng.chance(0.15) ? 2n : 0n;
      const present = rng.chance(0.9) ? 1n : 0n;
      const at = ctx + devfn * 16;
      put64(img, at, BigInt(t.top) | (tt << 2n) | fpd | present);
      put64(img, at + 8, BigInt(aw) | (BigInt(1 + rng.int(255)) << 8n));
      words.push({ pa: at, what: "context lo" }, { pa: at + 8, what: "context hi" });
      leaves.push(...randomLeaves(rng, t, devfn, 12 + rng.int(12), sllps));
    }
  } else {
    const lo = pages.alloc(img);
    const hi = pages.alloc(img);
    put64(img, root, BigInt(lo) | 1n);
    put64(img, root + 8, BigInt(hi) | 1n);
    words.push({ pa: root, what: "root lo" }, { pa: root + 8, what: "root hi" });
    for (const devfn of X86.devfns) {
      const dir = pages.alloc(img);
      const ptbl = pages.alloc(img);
      // RID_PASID: QEMU 7.2 reports ECAP.RPS = 0, so PASID 0 serves requests without PASID
      // (9.4); a non-zero value is left to the hostile generator.
      const ridPasid = 0;
      const at = (devfn < 128 ? lo : hi) + (devfn & 127) * 32;
      const fpd = rng.chance(0.15) ? 2n : 0n;
      const present = rng.chance(0.95) ? 1n : 0n;
      // PDTS 11:9: 2^(PDTS+7) directory entries; index 0 is always inside.
      put64(img, at, BigInt(dir) | (BigInt(rng.int(8)) << 9n) | fpd | present);
      put64(img, at + 8, BigInt(ridPasid));
      words.push({ pa: at, what: "sm context val0" }, { pa: at + 8, what: "sm context val1" });
      put64(img, dir, BigInt(ptbl) | 1n | (rng.chance(0.1) ? 2n : 0n));
      words.push({ pa: dir, what: "pasid dir" });
      const aw = rng.pick(aws);
      const t = new SsTables(img, pages, aw + 2, words, rng);
      const pgtt = rng.chance(0.15) ? 4n : 2n;
      const pe = ptbl + ridPasid * 64;
      put64(img, pe, BigInt(t.top) | (pgtt << 6n) | (BigInt(aw) << 2n) | (rng.chance(0.1) ? 2n : 0n) | 1n);
      put64(img, pe + 8, BigInt(1 + rng.int(0xfffe)));
      words.push({ pa: pe, what: "pasid entry val0" }, { pa: pe + 8, what: "pasid entry val1" });
      leaves.push(...randomLeaves(rng, t, devfn, 12 + rng.int(12), sllps));
    }
  }
  return { img, rtaddr: BigInt(root) | (mode === "scalable" ? 1n << 10n : 0n), leaves, words };
}

/** Tables written by the project's own driver half (createVtd + paging domains + map). */
function buildDriver(rng: Rng, mode: VtdMode): Built {
  const memory = new PhysicalMemory([{ base: 0, size: X86.ramSize }]);
  const tables = new TableAllocator(memory, X86.tables, X86.tablesSize);
  const vtd = createVtd(
    { memory, tables, name: "drv" },
    {
      mode,
      haw: X86.aw,
      sagaw: 0b0100,
      firstStage: false,
      nesting: false,
      faultRecords: 1,
      dirtyTracking: false,
      pasidBits: 8,
    },
  );
  const leaves: Leaf[] = [];
  for (const devfn of X86.devfns) {
    vtd.addDevice({ rid: devfn, pasidBits: 0 });
    if (rng.chance(0.1)) {
      vtd.attach(devfn, { kind: "rid" }, vtd.allocDomain({ type: "identity" }));
      continue;
    }
    const d = vtd.allocDomain({ type: "paging" });
    vtd.attach(devfn, { kind: "rid" }, d);
    const n = 6 + rng.int(10);
    for (let i = 0; i < n; i++) {
      const big = rng.chance(0.25);
      const size = big ? 0x20_0000 : 4096 * (1 + rng.int(4));
      const iova =
        (rng.chance(0.5) ? rng.int(1024) : rng.int(2 ** 24)) * 0x20_0000 + (big ? 0 : rng.int(16) * 4096);
      const pa = big ? X86.pool + rng.int(2) * 0x20_0000 : X86.pool + rng.int(X86.poolSize / 4096 - 4) * 4096;
      const prot = rng.pick([1, 2, 3, 3]);
      if (inInterruptRange(iova)) continue;
      try {
        d.map(iova, pa, size, prot);
        for (let off = 0; off < size; off += Math.min(size, 4096))
          if (!big) leaves.push({ sid: devfn, iova: iova + off, size: 4096, pa: pa + off });
        if (big) leaves.push({ sid: devfn, iova, size, pa });
      } catch {
        // overlaps an earlier mapping: skip it
      }
    }
  }
  const img: Image = new Map();
  for (const pfn of memory.residentFrames()) {
    const pa = pfn * 4096;
    if (pa < X86.tables || pa >= X86.tables + X86.tablesSize) continue;
    img.set(pfn, memory.read(pa, 4096));
  }
  const rtaddr = BigInt(vtd.hw.rta) | (mode === "scalable" ? 1n << 10n : 0n);
  return { img, rtaddr, leaves, words: [] };
}

/** Flips bits of table words (hostile input: reserved bits, P bits, types, pointers). */
function mutate(rng: Rng, b: Built): string[] {
  const notes: string[] = [];
  const leaves = b.words.filter((w) => w.what.endsWith("leaf"));
  if (leaves.length > 0 && rng.chance(0.3)) {
    // TM (bit 62) of a second-stage leaf: reserved while ECAP.DT = 0 (9.8).
    const w = rng.pick(leaves);
    const old = get64(b.img, w.pa);
    put64(b.img, w.pa, old | (1n << 62n));
    notes.push(
      `${w.what}@0x${w.pa.toString(16)} TM: 0x${old.toString(16)} -> 0x${(old | (1n << 62n)).toString(16)}`,
    );
  }
  const n = 1 + rng.int(3);
  for (let i = 0; i < n && b.words.length > 0; i++) {
    const w = rng.pick(b.words);
    const old = get64(b.img, w.pa);
    let bit: number;
    const roll = rng.int(10);
    if (roll < 4) bit = rng.int(12);
    else if (roll < 6)
      bit = 12 + rng.int(17); // pointer bits that stay inside RAM
    else if (roll < 8)
      bit = 29 + rng.int(23); // beyond RAM / above the address width
    else bit = 52 + rng.int(12);
    const v = old ^ (1n << BigInt(bit));
    put64(b.img, w.pa, v);
    notes.push(`${w.what}@0x${w.pa.toString(16)} bit ${bit}: 0x${old.toString(16)} -> 0x${v.toString(16)}`);
  }
  return notes;
}

/** Requests over the leaves (mostly inside them, landing in the pool) and around them. */
function requests(rng: Rng, leaves: readonly Leaf[], n: number): Req[] {
  const out: Req[] = [];
  while (out.length < n) {
    const dev = rng.int(2);
    const sid = X86.devfns[dev]!;
    const mine = leaves.filter((l) => l.sid === sid);
    let iova: number;
    if (mine.length > 0 && rng.chance(0.75)) {
      const l = rng.pick(mine);
      let off: number;
      if (l.pa <= X86.pool && l.pa + l.size >= X86.pool + X86.poolSize && rng.chance(0.9))
        off = X86.pool - l.pa + rng.int(X86.poolSize / 8) * 8;
      else off = rng.int(l.size / 8) * 8;
      iova = l.iova + off;
    } else if (mine.length > 0 && rng.chance(0.6)) {
      // A neighbour of a leaf: often unmapped, sometimes in a sibling table.
      const l = rng.pick(mine);
      iova = Math.max(0, l.iova + (rng.int(64) - 32) * 4096 + rng.int(512) * 8);
    } else {
      iova = rng.int(2 ** rng.pick([32, 39, 48, 49]) / 8) * 8;
    }
    if (inInterruptRange(iova) || iova >= 2 ** 53) continue;
    out.push({ dev, sid, iova, write: rng.chance(0.4) });
  }
  return out;
}

/** One scenario of `gen` (seeded). `cap` is QEMU's CAP_REG (SAGAW, SLLPS). */
export function vtdScenario(rng: Rng, gen: GenName, mode: VtdMode, cap: bigint, n: number): VtdScenario {
  const b = gen === "driver" ? buildDriver(rng, mode) : buildRandom(rng, mode, cap);
  const mutations = gen === "hostile" ? mutate(rng, b) : [];
  return { gen, mode, img: b.img, rtaddr: b.rtaddr, reqs: requests(rng, b.leaves, n), mutations };
}

// ------------------------------------------------------------------ model

/** The model's answer for every request: a hardware-model-only VT-d over the same image. */
export function vtdPredict(s: VtdScenario, cap: bigint, ecap: bigint): Predicted[] {
  const memory = new PhysicalMemory([{ base: 0, size: X86.ramSize }]);
  // The pool's signatures too: a flipped table pointer may land there.
  memory.write(X86.pool, poolImage(X86.pool, X86.poolSize));
  for (const [pfn, p] of s.img) memory.write(pfn * 4096, p);
  const vtd = vtdFromRegisters(memory, {
    CAP: cap,
    ECAP: ecap,
    RTADDR: s.rtaddr,
    GSTS: BigInt((GCMD_TE | GCMD_SRTP) >>> 0),
    HAW: BigInt(X86.aw),
  });
  const out = createTranslation();
  const hw = vtd.hw;
  return s.reqs.map((r) => {
    // Each request is judged alone: no cached translation, and the fault record it
    // leaves is read and cleared (W1C F, then FSTS) as the harness does on QEMU.
    vtd.flushCaches();
    const ok = vtd.translate(r.sid, NO_PASID, r.iova, accessFlags(r.write ? "write" : "read"), out);
    if (ok) return { pa: out.pa, record: null, faulted: false, faultName: "", sizeLg2: out.sizeLg2 };
    const f = out.fault!;
    let record: FaultRecordObs | null = null;
    for (const { index, words } of hw.pendingFaults()) {
      record = decodeFrcd(words[0], words[1]);
      hw.writeRegister(hw.frcdOffset + index * 16 + 12, 1n << 31n, 4);
    }
    hw.writeRegister(Reg.FSTS, 0x7fn, 4);
    return { pa: null, record, faulted: true, faultName: f.vendor.name, sizeLg2: 0 };
  });
}

// ------------------------------------------------------------------ QEMU rig

/** The halting x86 firmware: a 64 KiB BIOS image whose reset vector (0xFFFF0) is `hlt; jmp $-1`. */
export function x86Firmware(): Uint8Array {
  const b = new Uint8Array(65536);
  b.set([0xf4, 0xeb, 0xfd], 0xfff0);
  return b;
}

/** QEMU's command line for a mode (q35, intel-iommu, two edu behind it). */
export function vtdArgs(mode: VtdMode, bios: string): string[] {
  const iommu = `intel-iommu,intremap=off,aw-bits=${X86.aw}${mode === "scalable" ? ",x-scalable-mode=on" : ""}`;
  const args = ["-M", "q35", "-accel", "tcg", "-icount", "shift=0,sleep=off", "-bios", bios];
  args.push("-display", "none", "-nodefaults", "-m", "512M", "-device", iommu);
  for (const devfn of X86.devfns)
    args.push("-device", `edu,dma_mask=0xffffffffffffffff,addr=0x${(devfn >> 3).toString(16)}.${devfn & 7}`);
  return args;
}

const hx = (n: number | bigint): string => `0x${n.toString(16)}`;

/**
 * Loads one scenario into a rig's guest (either architecture): the new image replaces the
 * last one (its pages not rewritten are zeroed), then each edu's buffer gets its token
 * page (slot k holds token(k) for writes, `blank` for reads) by a DMA from scratch RAM.
 */
export async function loadScenario(
  rig: { readonly q: QTest; wait(bar: number): Promise<string[]> },
  last: Set<number>,
  img: Image,
  scratch: number,
  bars: readonly number[],
  tokens: (i: number) => bigint,
  blank: bigint,
): Promise<void> {
  const cmds: string[] = [];
  const zero = new Uint8Array(4096);
  for (const pfn of last) if (!img.has(pfn)) cmds.push(QTest.writeCmd(pfn * 4096, zero));
  last.clear();
  for (const [pfn, p] of img) {
    cmds.push(QTest.writeCmd(pfn * 4096, p));
    last.add(pfn);
  }
  for (let e = 0; e < 2; e++) {
    const t = new Uint8Array(4096);
    const dv = new DataView(t.buffer);
    for (let k = 0; k < 512; k++) dv.setBigUint64(k * 8, k < 256 ? blank : tokens(e * 512 + k), true);
    cmds.push(QTest.writeCmd(scratch + e * 0x2000, t));
  }
  await rig.q.run(cmds);
  for (let e = 0; e < 2; e++) {
    // edu 7.2 refuses a DMA that reaches the buffer's last byte (edu_check_range): 4088 bytes.
    await rig.q.run(VtdRig.dma(bars[e]!, scratch + e * 0x2000, 0x40000, 4088, false));
    await rig.wait(bars[e]!);
  }
}

/** A running q35 with intel-iommu, driven request by request. */
export class VtdRig {
  cap = 0n;
  ecap = 0n;
  readonly #lastImage = new Set<number>();

  readonly q: QTest;

  constructor(q: QTest) {
    this.q = q;
  }

  async init(): Promise<void> {
    const q = this.q;
    for (const [i, devfn] of X86.devfns.entries()) {
      const cfg = (reg: number): string => `outl 0xcf8 ${hx((0x8000_0000 | (devfn << 8) | reg) >>> 0)}`;
      const [id] = await q.run([cfg(0), "inl 0xcfc"].slice(0, 2));
      void id;
      const ans = await q.run([
        cfg(0),
        "inl 0xcfc",
        cfg(0x10),
        `outl 0xcfc ${hx(X86.bars[i]!)}`,
        cfg(4),
        "outl 0xcfc 0x6",
      ]);
      if (ans[1] !== "0x11e81234") throw new Error(`no edu at devfn ${hx(devfn)} (id ${ans[1]})`);
    }
    this.cap = await q.readq(X86.dmar + R.CAP);
    this.ecap = await q.readq(X86.dmar + R.ECAP);
    // Signatures over the whole pool, once (requests only ever change words they wrote).
    const sig = new Uint8Array(X86.poolSize);
    const dv = new DataView(sig.buffer);
    for (let off = 0; off < X86.poolSize; off += 8)
      dv.setBigUint64(off, (0xa5a5n << 48n) | BigInt(X86.pool + off), true);
    const cmds: string[] = [];
    for (let off = 0; off < X86.poolSize; off += 0x10000)
      cmds.push(QTest.writeCmd(X86.pool + off, sig.subarray(off, off + 0x10000)));
    await q.run(cmds);
  }

  /** edu DMA command set: src, dst, count, cmd (cmd bit 0 start, bit 1 device-to-RAM). */
  static dma(bar: number, src: number, dst: number, cnt: number, toRam: boolean): string[] {
    return [
      `writeq ${hx(bar + 0x80)} ${hx(src)}`,
      `writeq ${hx(bar + 0x88)} ${hx(dst)}`,
      `writeq ${hx(bar + 0x90)} ${hx(cnt)}`,
      `writeq ${hx(bar + 0x98)} ${toRam ? "0x3" : "0x1"}`,
    ];
  }

  /** Waits for a DMA to end; returns the answers of `then` sent with the finishing poll. */
  async wait(bar: number, then: readonly string[] = []): Promise<string[]> {
    for (let i = 0; i < 10000; i++) {
      const a = await this.q.run([`readq ${hx(bar + 0x98)}`, ...then]);
      if ((BigInt(a[0]!) & 1n) === 0n) return a.slice(1);
    }
    throw new Error("edu DMA never finished");
  }

  async gcmd(v: number): Promise<void> {
    await this.q.run([`writel ${hx(X86.dmar + R.GCMD)} ${hx(v >>> 0)}`]);
  }

  /** Runs one scenario: writes the tables, enables translation, issues every request. */
  async run(s: VtdScenario, tokens: (i: number) => bigint, blank: bigint): Promise<RawObs[]> {
    const q = this.q;
    await this.gcmd(0);
    await loadScenario(this, this.#lastImage, s.img, X86.scratch, X86.bars, tokens, blank);
    await q.run([
      `writeq ${hx(X86.dmar + R.RTADDR)} ${hx(s.rtaddr)}`,
      `writel ${hx(X86.dmar + R.GCMD)} ${hx(GCMD_SRTP >>> 0)}`,
      `writel ${hx(X86.dmar + R.GCMD)} ${hx(GCMD_TE >>> 0)}`,
      `writel ${hx(X86.dmar + R.FRCD + 12)} 0x80000000`,
      `writel ${hx(X86.dmar + R.FSTS)} 0x7f`,
    ]);
    const gsts = await q.readl(X86.dmar + R.GSTS);
    if ((gsts & GCMD_TE) === 0) throw new Error(`translation did not enable (GSTS ${hx(gsts)})`);
    const out: RawObs[] = [];
    const slots = [0, 0];
    let clear: string[] = [];
    for (const r of s.reqs) {
      const bar = X86.bars[r.dev]!;
      const e = r.dev;
      const slot = r.write ? 256 + (slots[e]! % 255) : slots[e]! % 256;
      slots[e]!++;
      const buf = 0x40000 + slot * 8;
      await q.run([
        ...clear,
        ...(r.write ? VtdRig.dma(bar, buf, r.iova, 8, true) : VtdRig.dma(bar, r.iova, buf, 8, false)),
      ]);
      const [frcd] = await this.wait(bar, [`b64read ${hx(X86.dmar + R.FRCD)} 0x10`]);
      const b = Buffer.from(frcd!, "base64");
      const lo = b.readBigUInt64LE(0);
      const hi = b.readBigUInt64LE(8);
      clear = [];
      if (hi >> 63n)
        clear = [`writel ${hx(X86.dmar + R.FRCD + 12)} 0x80000000`, `writel ${hx(X86.dmar + R.FSTS)} 0x7f`];
      out.push({ slot, frcd: hi >> 63n ? [lo, hi] : null });
    }
    if (clear.length) await q.run(clear);
    await this.gcmd(0);
    return out;
  }

  /** The 4 KiB buffer of edu `e`, copied to RAM by an untranslated DMA (translation is off). */
  async buffer(e: number): Promise<Buffer> {
    const dst = X86.scratch + e * 0x2000 + 0x1000;
    await this.q.run(VtdRig.dma(X86.bars[e]!, 0x40000, dst, 4088, true));
    await this.wait(X86.bars[e]!);
    return this.q.read(dst, 4096);
  }
}

/** Per request: the edu slot used and the fault record (lo, hi) if the F bit was set. */
export interface RawObs {
  readonly slot: number;
  readonly frcd: readonly [bigint, bigint] | null;
}

/** Decodes an FRCD (VT-d 10.4.14) into the common record shape. */
export function decodeFrcd(lo: bigint, hi: bigint): FaultRecordObs {
  return {
    code: Number((hi >> 32n) & 0xffn),
    sid: Number(hi & 0xffffn),
    addr: Number(lo & ~0xfffn),
    read: ((hi >> 62n) & 1n) === 1n,
    // PV means something only with PP set (10.4.14).
    extra: (hi >> 31n) & 1n ? { PP: 1, PV: Number((hi >> 40n) & 0xfffffn) } : { PP: 0 },
  };
}

/**
 * How the tables say a requester is translated: "pt" when its context entry (legacy,
 * TT = 10b) or its RID_PASID PASID entry (scalable, PGTT = 100b) is pass-through.
 */
export function vtdContextLo(img: Image, rtaddr: bigint, sid: number): bigint | null {
  const root = Number(rtaddr & ~0xfffn);
  const scalable = ((rtaddr >> 10n) & 3n) === 1n;
  const devfn = sid & 0xff;
  const re = get64(img, root + (sid >> 8) * 16 + (scalable && devfn >= 128 ? 8 : 0));
  if ((re & 1n) === 0n) return null;
  const ctp = Number(re & 0x000f_ffff_ffff_f000n);
  return get64(img, scalable ? ctp + (devfn & 127) * 32 : ctp + devfn * 16);
}

/** The RID_PASID of a scalable-mode context entry (0 when absent). */
export function vtdRidPasid(img: Image, rtaddr: bigint, sid: number): number {
  const root = Number(rtaddr & ~0xfffn);
  const devfn = sid & 0xff;
  const re = get64(img, root + (sid >> 8) * 16 + (devfn >= 128 ? 8 : 0));
  if ((re & 1n) === 0n) return 0;
  return Number(get64(img, Number(re & 0x000f_ffff_ffff_f000n) + (devfn & 127) * 32 + 8) & 0xfffffn);
}

export function vtdTranslationType(img: Image, rtaddr: bigint, sid: number): "pt" | "other" {
  const root = Number(rtaddr & ~0xfffn);
  const scalable = ((rtaddr >> 10n) & 3n) === 1n;
  const bus = sid >> 8;
  const devfn = sid & 0xff;
  const re = get64(img, root + bus * 16 + (scalable && devfn >= 128 ? 8 : 0));
  if ((re & 1n) === 0n) return "other";
  const ctp = Number(re & 0x000f_ffff_ffff_f000n);
  if (!scalable) {
    const lo = get64(img, ctp + devfn * 16);
    return (lo & 1n) === 1n && ((lo >> 2n) & 3n) === 2n ? "pt" : "other";
  }
  const ce = ctp + (devfn & 127) * 32;
  const v0 = get64(img, ce);
  const ridPasid = Number(get64(img, ce + 8) & 0xfffffn);
  const dir = get64(img, Number(v0 & 0x000f_ffff_ffff_f000n) + (ridPasid >> 6) * 8);
  const pe = get64(img, Number(dir & 0x000f_ffff_ffff_f000n) + (ridPasid & 63) * 64);
  return ((pe >> 6n) & 7n) === 4n ? "pt" : "other";
}

/** The second-stage leaf the tables give `iova` of requester `sid` (a plain walk), or null. */
export function vtdSsLeaf(img: Image, rtaddr: bigint, sid: number, iova: number): bigint | null {
  const lo = vtdContextLo(img, rtaddr, sid);
  if (lo === null || (lo & 1n) === 0n) return null;
  const scalable = ((rtaddr >> 10n) & 3n) === 1n;
  let top: number;
  let aw: number;
  if (!scalable) {
    const root = Number(rtaddr & ~0xfffn);
    const re = get64(img, root + (sid >> 8) * 16);
    const hi = get64(img, Number(re & 0x000f_ffff_ffff_f000n) + (sid & 0xff) * 16 + 8);
    top = Number(lo & 0x000f_ffff_ffff_f000n);
    aw = Number(hi & 7n);
  } else {
    const ridPasid = vtdRidPasid(img, rtaddr, sid);
    const dir = get64(img, Number(lo & 0x000f_ffff_ffff_f000n) + (ridPasid >> 6) * 8);
    const pe = get64(img, Number(dir & 0x000f_ffff_ffff_f000n) + (ridPasid & 63) * 64);
    top = Number(pe & 0x000f_ffff_ffff_f000n);
    aw = Number((pe >> 2n) & 7n);
  }
  let table = top;
  for (let level = aw + 2; level >= 1; level--) {
    const e = get64(img, table + (Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512) * 8);
    if ((e & 3n) === 0n) return null;
    if (level === 1 || (e & 0x80n) !== 0n) return e;
    table = Number(e & 0x000f_ffff_ffff_f000n);
  }
  return null;
}

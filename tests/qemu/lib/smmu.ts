/**
 * SMMUv3 side of the differential harness: scenario generators (the project's own driver
 * half, random spec-valid tables, hostile mutations), the QEMU rig (virt, iommu=smmuv3,
 * two edu DMA engines), and the model's prediction through the factory's `fromRegisters`.
 *
 * Structures follow IHI 0070 (SMMUv3): STE 5.2, L1STD 5.1 (Span), CD 5.4, event records
 * 7.3, registers 6.3; stage-1 descriptors are VMSAv8-64 (4 KiB granule here).
 */

import { accessFlags, createTranslation, NO_PASID, PhysicalMemory, TableAllocator } from "@iommu-kit/core";
import { smmuv3Backend } from "@iommu-kit/smmuv3";
import type { FaultRecordObs, Image, Predicted, Req } from "./common.ts";
import { get64, page, poolImage, put64, type Rng } from "./common.ts";
import { QTest } from "./qtest.ts";
import { loadScenario, VtdRig } from "./vtd.ts";

export const ARM = {
  ram: 0x4000_0000,
  ramSize: 512 * 1024 * 1024,
  tables: 0x4100_0000,
  tablesSize: 0x0100_0000,
  // Far from the tables, so a flipped table pointer does not land on harness data.
  scratch: 0x5f00_0000,
  pool: 0x4400_0000,
  poolSize: 0x0040_0000,
  smmu: 0x0905_0000,
  ecam: 0x3f00_0000,
  bars: [0x1000_0000, 0x1010_0000],
  devfns: [0x20, 0x88],
  /** Command queue and event queue (2^8 entries each) in the scratch area. */
  cmdq: 0x5f01_0000,
  evtq: 0x5f02_0000,
  qLog2: 8,
  /** Event queue: 2^10 entries (a faulting request can raise two events). */
  eLog2: 10,
} as const;

const R = {
  IDR0: 0x00,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  GERROR: 0x60,
  GERRORN: 0x64,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0,
  EVENTQ_PROD: 0x100a8,
  EVENTQ_CONS: 0x100ac,
} as const;
const CR0_ON = 0x1 | 0x4 | 0x8; // SMMUEN, EVENTQEN, CMDQEN

export type StLayout = "linear" | "2level";
export type GenName = "driver" | "random" | "hostile";

interface Leaf {
  readonly sid: number;
  readonly iova: number;
  readonly size: number;
  readonly pa: number;
}
interface Word {
  readonly pa: number;
  readonly what: string;
}

export interface SmmuScenario {
  readonly gen: GenName;
  readonly layout: StLayout;
  readonly img: Image;
  /** CD address by StreamID (random and hostile generators). */
  readonly cds: Map<number, number>;
  readonly strtabBase: bigint;
  readonly strtabCfg: number;
  readonly reqs: Req[];
  readonly mutations: string[];
}

class Pages {
  next: number = ARM.tables;
  alloc(img: Image, sizeLg2 = 12): number {
    const size = 2 ** sizeLg2;
    this.next = Math.ceil(this.next / size) * size;
    const pa = this.next;
    this.next += size;
    for (let o = 0; o < size; o += 4096) page(img, pa + o);
    return pa;
  }
}

/** A VMSAv8-64 stage-1 tree, 4 KiB granule, writer (D8.3). */
class S1Tables {
  readonly top: number;
  readonly img: Image;
  readonly pages: Pages;
  readonly start: number;
  readonly words: Word[];
  readonly rng: Rng;
  /** Input address bits (64 - T0SZ). */
  readonly inputBits: number;
  constructor(
    img: Image,
    pages: Pages,
    start: number,
    words: Word[],
    rng: Rng,
    inputBits: number,
    topOffset = 0,
  ) {
    this.img = img;
    this.pages = pages;
    this.start = start;
    this.words = words;
    this.rng = rng;
    this.inputBits = inputBits;
    // A start-level table smaller than a page sits at `topOffset`, aligned to its size.
    this.top = pages.alloc(img) + topOffset;
  }

  map(iova: number, leafLevel: number, pa: number, attrs: bigint): boolean {
    let table = this.top;
    for (let level = this.start; level < leafLevel; level++) {
      const at = table + (Math.floor(iova / 2 ** (12 + 9 * (3 - level))) % 512) * 8;
      const e = get64(this.img, at);
      if (e === 0n) {
        const next = this.pages.alloc(this.img);
        // APTable [62:61]: mostly 0, sometimes 0b10 (no writes below) (D8.4.2).
        const ap = this.rng.chance(0.1) ? 2n << 61n : 0n;
        put64(this.img, at, BigInt(next) | 3n | ap);
        this.words.push({ pa: at, what: `S1 L${level} table` });
        table = next;
      } else {
        if ((e & 3n) !== 3n) return false;
        table = Number(e & 0x0000_ffff_ffff_f000n);
      }
    }
    const at = table + (Math.floor(iova / 2 ** (12 + 9 * (3 - leafLevel))) % 512) * 8;
    if (get64(this.img, at) !== 0n) return false;
    put64(this.img, at, BigInt(pa) | attrs | (leafLevel === 3 ? 3n : 1n));
    this.words.push({ pa: at, what: `S1 L${leafLevel} ${leafLevel === 3 ? "page" : "block"}` });
    return true;
  }
}

/** Stage-1 leaf attributes: AF, SH inner, AttrIndx, AP[2:1] random (D8.4.3). */
function leafAttrs(rng: Rng): bigint {
  const ap = BigInt(rng.pick([0, 1, 2, 3, 1, 1]));
  return (1n << 10n) | (3n << 8n) | (ap << 6n) | (BigInt(rng.int(8)) << 2n);
}

function randomLeaves(rng: Rng, t: S1Tables, sid: number, count: number): Leaf[] {
  const out: Leaf[] = [];
  const span = 2 ** t.inputBits;
  for (let i = 0; i < count * 3 && out.length < count; i++) {
    const roll = rng.int(10);
    const leafLevel = roll < 2 ? 2 : roll < 3 ? 1 : 3;
    const size = 2 ** (12 + 9 * (3 - leafLevel));
    const region = rng.chance(0.5) ? rng.int(Math.min(4, span / 2 ** 30)) : rng.int(span / 2 ** 30);
    const iova = region * 2 ** 30 + (leafLevel === 1 ? 0 : rng.int(2 ** 30 / size) * size);
    if (iova >= span) continue;
    const pa =
      leafLevel === 3
        ? ARM.pool + rng.int(ARM.poolSize / 4096) * 4096
        : leafLevel === 2
          ? ARM.pool + rng.int(ARM.poolSize / size) * size
          : ARM.ram;
    if (t.map(iova, leafLevel, pa, leafAttrs(rng))) out.push({ sid, iova, size, pa });
  }
  return out;
}

interface Built {
  img: Image;
  /** CD address by StreamID (random generator). */
  cds?: Map<number, number>;
  strtabBase: bigint;
  strtabCfg: number;
  leaves: Leaf[];
  words: Word[];
}

/** Writes one STE (5.2): V, Config = S1 translate (or bypass/abort), S1ContextPtr. */
function putSte(img: Image, at: number, config: number, cd: number): void {
  const w0 = 1n | (BigInt(config) << 1n) | (BigInt(cd) & 0xffff_ffc0n);
  const w1 = BigInt(Math.floor(cd / 2 ** 32)) & 0xffffn;
  put64(img, at, w0 | (w1 << 32n));
}

/** Writes one CD (5.4): 4 KiB TG0, T0SZ, EPD1, IPS, R, A, AA64, ASID, TTB0. */
function putCd(img: Image, at: number, rng: Rng, t0sz: number, ttb0: number): void {
  const w0 = BigInt(t0sz) | (0n << 6n) | (1n << 30n) | (1n << 31n); // TG0 4K, EPD1, V
  const ips = BigInt(rng.pick([4, 4, 5, 3]));
  const r = rng.chance(0.9) ? 1n : 0n;
  const w1 = ips | (1n << 9n) | (r << 13n) | (1n << 14n) | (BigInt(rng.int(0x10000)) << 16n);
  put64(img, at, w0 | (w1 << 32n));
  put64(img, at + 8, BigInt(ttb0));
  put64(img, at + 24, 0xf404ff44n); // MAIR0
}

/** Random spec-valid tables written by the harness. */
function buildRandom(rng: Rng, layout: StLayout): Built {
  const img: Image = new Map();
  const pages = new Pages();
  const words: Word[] = [];
  const leaves: Leaf[] = [];
  const cds = new Map<number, number>();
  const log2size = 8;
  let strtab: number;
  let cfg: number;
  const steAt = new Map<number, number>();
  if (layout === "linear") {
    strtab = pages.alloc(img, 14); // 256 STEs * 64 B, aligned to its size (6.3.24)
    cfg = log2size;
    for (const sid of ARM.devfns) steAt.set(sid, strtab + sid * 64);
  } else {
    const split = rng.pick([6, 8]);
    const l1n = 2 ** (log2size - split);
    strtab = pages.alloc(img);
    cfg = (1 << 16) | (split << 6) | log2size;
    for (let i = 0; i < l1n; i++) {
      const sids = ARM.devfns.filter((s) => s >> split === i);
      if (sids.length === 0) continue;
      // Span: 2^(Span-1) STEs (5.1); a short L2 table leaves some SIDs out of range.
      const span = rng.chance(0.8) ? split + 1 : 1 + rng.int(split + 1);
      const l2 = pages.alloc(img, Math.max(12, split + 6));
      put64(img, strtab + i * 8, BigInt(l2) | BigInt(span));
      words.push({ pa: strtab + i * 8, what: "L1STD" });
      for (const sid of sids) steAt.set(sid, l2 + (sid & (2 ** split - 1)) * 64);
    }
  }
  for (const sid of ARM.devfns) {
    const start = rng.pick([0, 1]);
    // T0SZ 32 / 33 start at level 1 with a 4- / 2-entry table (32 / 16 bytes): its base need
    // only be aligned to its size (D8.2.2; IHI 0070 5.4 CD.TTB0).
    const small = start === 1 && rng.chance(0.2);
    const t0sz = start === 0 ? 16 : small ? rng.pick([32, 33]) : 25;
    const tableBytes = 8 * 2 ** (64 - t0sz - 30);
    const t = new S1Tables(
      img,
      pages,
      start,
      words,
      rng,
      64 - t0sz,
      small ? rng.int(4096 / tableBytes) * tableBytes : 0,
    );
    const cd = pages.alloc(img);
    cds.set(sid, cd);
    putCd(img, cd, rng, t0sz, t.top);
    words.push({ pa: cd, what: "CD w0-1" }, { pa: cd + 8, what: "CD TTB0" });
    const roll = rng.int(20);
    const config = roll === 0 ? 4 : roll === 1 ? 0 : 5;
    const at = steAt.get(sid)!;
    putSte(img, at, config, cd);
    words.push({ pa: at, what: "STE w0-1" });
    leaves.push(...randomLeaves(rng, t, sid, 12 + rng.int(12)));
  }
  return { img, strtabBase: BigInt(strtab), strtabCfg: cfg, leaves, words, cds };
}

/** Tables written by the project's own driver half (smmuv3Backend.create, paging domains, map). */
function buildDriver(rng: Rng, layout: StLayout, idr: Record<string, bigint>): Built {
  const memory = new PhysicalMemory([{ base: ARM.ram, size: ARM.ramSize }]);
  const tables = new TableAllocator(memory, ARM.tables, ARM.tablesSize);
  const b = smmuv3Backend.create(
    { memory, tables, name: "drv" },
    // 2-level needs more StreamID bits than the driver's STRTAB_SPLIT (8), or it goes linear.
    {
      stages: "s1",
      streamTable: layout,
      sidBits: layout === "linear" ? 8 : 16,
      ssidBits: 0,
      oas: 44,
      granules: ["4k"],
    },
  );
  void idr;
  const leaves: Leaf[] = [];
  for (const sid of ARM.devfns) {
    b.addDevice({ rid: sid, pasidBits: 0 });
    if (rng.chance(0.1)) {
      b.attach(sid, { kind: "rid" }, b.allocDomain({ type: "identity" }));
      continue;
    }
    const d = b.allocDomain({ type: "paging" });
    b.attach(sid, { kind: "rid" }, d);
    const n = 6 + rng.int(10);
    for (let i = 0; i < n; i++) {
      const big = rng.chance(0.25);
      const size = big ? 0x20_0000 : 4096 * (1 + rng.int(4));
      const iova =
        (rng.chance(0.5) ? rng.int(1024) : rng.int(2 ** 18)) * 0x20_0000 + (big ? 0 : rng.int(16) * 4096);
      const pa = big ? ARM.pool + rng.int(2) * 0x20_0000 : ARM.pool + rng.int(ARM.poolSize / 4096 - 4) * 4096;
      const prot = rng.pick([1, 3, 3]);
      try {
        d.map(iova, pa, size, prot);
        if (big) leaves.push({ sid, iova, size, pa });
        else
          for (let off = 0; off < size; off += 4096)
            leaves.push({ sid, iova: iova + off, size: 4096, pa: pa + off });
      } catch {
        // overlaps (or the MSI window): skip
      }
    }
  }
  const img: Image = new Map();
  for (const pfn of memory.residentFrames()) {
    const pa = pfn * 4096;
    if (pa >= ARM.tables && pa < ARM.tables + ARM.tablesSize) img.set(pfn, memory.read(pa, 4096));
  }
  const hw = (b as unknown as { hw: { readRegister(n: string): bigint } }).hw;
  // The driver's instance advertises HTTU, so its CDs set HA/HD; QEMU's SMMU has no HTTU,
  // and Linux (arm_smmu_write_ctx_desc) leaves HA/HD clear there: so do we.
  for (const sid of ARM.devfns) {
    const ste = b.explain!(sid, NO_PASID, 0n, accessFlags("read")).find((st) => st.what === "STE");
    const ptr = ste?.fields?.S1ContextPtr;
    if (typeof ptr === "string" && ste?.fields?.Config === 5) {
      const cd = Number(BigInt(ptr));
      put64(img, cd, get64(img, cd) & ~(3n << 42n));
    }
  }
  return {
    img,
    strtabBase: hw.readRegister("STRTAB_BASE") & 0x000f_ffff_ffff_ffc0n,
    strtabCfg: Number(hw.readRegister("STRTAB_BASE_CFG")),
    leaves,
    words: [],
  };
}

function mutate(rng: Rng, b: Built): string[] {
  const notes: string[] = [];
  const n = 1 + rng.int(3);
  for (let i = 0; i < n && b.words.length > 0; i++) {
    const w = rng.pick(b.words);
    const old = get64(b.img, w.pa);
    const roll = rng.int(10);
    const bit =
      roll < 4 ? rng.int(12) : roll < 6 ? 12 + rng.int(17) : roll < 8 ? 29 + rng.int(19) : 48 + rng.int(16);
    const v = old ^ (1n << BigInt(bit));
    put64(b.img, w.pa, v);
    notes.push(`${w.what}@0x${w.pa.toString(16)} bit ${bit}: 0x${old.toString(16)} -> 0x${v.toString(16)}`);
  }
  return notes;
}

function requests(rng: Rng, leaves: readonly Leaf[], n: number): Req[] {
  const out: Req[] = [];
  while (out.length < n) {
    const dev = rng.int(2);
    const sid = ARM.devfns[dev]!;
    const mine = leaves.filter((l) => l.sid === sid);
    let iova: number;
    if (mine.length > 0 && rng.chance(0.75)) {
      const l = rng.pick(mine);
      const off =
        l.pa <= ARM.pool && l.pa + l.size >= ARM.pool + ARM.poolSize && rng.chance(0.9)
          ? ARM.pool - l.pa + rng.int(ARM.poolSize / 8) * 8
          : rng.int(l.size / 8) * 8;
      iova = l.iova + off;
    } else if (mine.length > 0 && rng.chance(0.6)) {
      const l = rng.pick(mine);
      iova = Math.max(0, l.iova + (rng.int(64) - 32) * 4096 + rng.int(512) * 8);
    } else {
      iova = rng.int(2 ** rng.pick([32, 39, 48]) / 8) * 8;
    }
    if (iova >= 2 ** 48) continue;
    if (rng.chance(0.5) && mine.length > 0 && iova >= 2 ** 32) iova %= 2 ** 32;
    out.push({ dev, sid, iova, write: rng.chance(0.4) });
  }
  return out;
}

export function smmuScenario(
  rng: Rng,
  gen: GenName,
  layout: StLayout,
  idr: Record<string, bigint>,
  n: number,
): SmmuScenario {
  const b = gen === "driver" ? buildDriver(rng, layout, idr) : buildRandom(rng, layout);
  const mutations = gen === "hostile" ? mutate(rng, b) : [];
  let strtabBase = b.strtabBase;
  if (gen === "hostile" && layout === "linear" && rng.chance(0.25)) {
    // STRTAB_BASE.ADDR below the table's size alignment (6.3.24: the effective base is aligned).
    // Below half the table size: QEMU 7.2 aligns to 2^(LOG2SIZE + 5) only (smmu_find_ste).
    strtabBase += BigInt(64 * (1 + rng.int(127)));
    mutations.push(`STRTAB_BASE 0x${b.strtabBase.toString(16)} -> 0x${strtabBase.toString(16)}`);
  }
  return {
    gen,
    layout,
    img: b.img,
    cds: b.cds ?? new Map(),
    strtabBase,
    strtabCfg: b.strtabCfg,
    reqs: requests(rng, b.leaves, n),
    mutations,
  };
}

/** Decodes an event record (7.3) into the common shape. */
export function decodeEvent(b: Uint8Array): FaultRecordObs {
  const dv = new DataView(b.buffer, b.byteOffset, 32);
  const w = (i: number): number => dv.getUint32(i * 4, true);
  const code = w(0) & 0xff;
  const withAccess = code === 0x0b || (code >= 0x10 && code <= 0x13);
  const extra: Record<string, string | number> = { SSV: (w(0) >> 11) & 1 };
  if (withAccess) {
    extra.S2 = (w(3) >> 7) & 1;
    extra.CLASS = ["CD", "TT", "IN", "RES"][(w(3) >> 8) & 3]!;
    extra.PnU = (w(3) >> 1) & 1;
    extra.InD = (w(3) >> 2) & 1;
  }
  if (code === 0x03 || code === 0x09 || code === 0x0b)
    extra.FetchAddr = `0x${(dv.getBigUint64(24, true) & ~7n).toString(16)}`;
  return {
    code,
    sid: w(1),
    addr: withAccess ? Number(dv.getBigUint64(16, true)) : null,
    read: withAccess ? ((w(3) >> 3) & 1) === 1 : null,
    extra,
  };
}

/** The model's answer for every request (fromRegisters over the same image and registers). */
export function smmuPredict(s: SmmuScenario, idr: Record<string, bigint>): Predicted[] {
  // virt's flash banks (0 - 128 MiB, unbacked) read as zeros in QEMU: plain memory here.
  const memory = new PhysicalMemory([
    { base: 0, size: 0x800_0000 },
    { base: ARM.ram, size: ARM.ramSize },
  ]);
  memory.write(ARM.pool, poolImage(ARM.pool, ARM.poolSize));
  for (const [pfn, p] of s.img) memory.write(pfn * 4096, p);
  const regs: Record<string, bigint> = {
    ...idr,
    CR0: BigInt(CR0_ON),
    CR2: 0n,
    STRTAB_BASE: s.strtabBase,
    STRTAB_BASE_CFG: BigInt(s.strtabCfg),
    EVENTQ_BASE: BigInt(ARM.evtq) | 19n,
    EVENTQ_PROD: 0n,
    EVENTQ_CONS: 0n,
  };
  const b = smmuv3Backend.fromRegisters!(memory, regs);
  const hw = (
    b as unknown as { hw: { readRegister(n: string): bigint; writeRegister(n: string, v: bigint): void } }
  ).hw;
  const out = createTranslation();
  return s.reqs.map((r) => {
    b.flushCaches();
    const ok = b.translate(r.sid, NO_PASID, r.iova, accessFlags(r.write ? "write" : "read"), out);
    const priv = createTranslation();
    const okPriv = b.translate(r.sid, NO_PASID, r.iova, accessFlags(r.write ? "write" : "read", true), priv);
    hw.writeRegister("EVENTQ_CONS", hw.readRegister("EVENTQ_PROD"));
    const privPa = okPriv ? priv.pa : null;
    const privSizeLg2 = okPriv ? priv.sizeLg2 : 0;
    const privFault = okPriv ? "" : (priv.fault?.vendor.name ?? "");
    if (ok)
      return {
        pa: out.pa,
        record: null,
        faulted: false,
        faultName: "",
        sizeLg2: out.sizeLg2,
        privPa,
        privSizeLg2,
        privFault,
      };
    const f = out.fault!;
    const record = f.recorded && f.vendor.raw ? decodeEvent(f.vendor.raw) : null;
    return {
      pa: null,
      record,
      faulted: true,
      faultName: f.vendor.name,
      sizeLg2: 0,
      privPa,
      privSizeLg2,
      privFault,
    };
  });
}

/** The halting arm64 kernel blob: `wfi; b .-4` (loaded as a raw image by -kernel). */
export function armFirmware(): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0xd503207f, true);
  dv.setUint32(4, 0x17ffffff, true);
  return b;
}

export function smmuArgs(kernel: string): string[] {
  const args = ["-M", "virt,iommu=smmuv3,highmem=off", "-cpu", "cortex-a57", "-accel", "tcg"];
  args.push(
    "-icount",
    "shift=0,sleep=off",
    "-kernel",
    kernel,
    "-display",
    "none",
    "-nodefaults",
    "-m",
    "512M",
  );
  for (const devfn of ARM.devfns)
    args.push("-device", `edu,dma_mask=0xffffffffffffffff,addr=0x${(devfn >> 3).toString(16)}.${devfn & 7}`);
  return args;
}

const hx = (n: number | bigint): string => `0x${n.toString(16)}`;

/** A running virt machine with an SMMUv3, driven request by request. */
export class SmmuRig {
  idr: Record<string, bigint> = {};
  #cmdProd = 0;
  #evtCons = 0;
  readonly #lastImage = new Set<number>();

  readonly q: QTest;

  constructor(q: QTest) {
    this.q = q;
  }

  async init(): Promise<void> {
    const q = this.q;
    for (const [i, devfn] of ARM.devfns.entries()) {
      const cfg = ARM.ecam + devfn * 4096;
      const a = await q.run([
        `readl ${hx(cfg)}`,
        `writel ${hx(cfg + 0x10)} ${hx(ARM.bars[i]!)}`,
        `writel ${hx(cfg + 4)} 0x6`,
      ]);
      if (a[0] !== "0x0000000011e81234") throw new Error(`no edu at devfn ${hx(devfn)} (id ${a[0]})`);
    }
    for (let i = 0; i < 6; i++) this.idr[`IDR${i}`] = BigInt(await q.readl(ARM.smmu + i * 4));
    const sig = new Uint8Array(ARM.poolSize);
    const dv = new DataView(sig.buffer);
    for (let off = 0; off < ARM.poolSize; off += 8)
      dv.setBigUint64(off, (0xa5a5n << 48n) | BigInt(ARM.pool + off), true);
    const cmds: string[] = [];
    for (let off = 0; off < ARM.poolSize; off += 0x10000)
      cmds.push(QTest.writeCmd(ARM.pool + off, sig.subarray(off, off + 0x10000)));
    await q.run(cmds);
    await q.run([
      `writel ${hx(ARM.smmu + R.CR0)} 0`,
      `writeq ${hx(ARM.smmu + R.CMDQ_BASE)} ${hx(ARM.cmdq | ARM.qLog2)}`,
      `writeq ${hx(ARM.smmu + R.EVENTQ_BASE)} ${hx(ARM.evtq | ARM.eLog2)}`,
      `writel ${hx(ARM.smmu + R.CMDQ_PROD)} 0`,
      `writel ${hx(ARM.smmu + R.CMDQ_CONS)} 0`,
      `writel ${hx(ARM.smmu + R.EVENTQ_PROD)} 0`,
      `writel ${hx(ARM.smmu + R.EVENTQ_CONS)} 0`,
    ]);
  }

  async wait(bar: number, then: readonly string[] = []): Promise<string[]> {
    for (let i = 0; i < 10000; i++) {
      const a = await this.q.run([`readq ${hx(bar + 0x98)}`, ...then]);
      if ((BigInt(a[0]!) & 1n) === 0n) return a.slice(1);
    }
    throw new Error("edu DMA never finished");
  }

  /** CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC through the command queue (4.3, 4.4). */
  async invalidateAll(): Promise<void> {
    const cmds: [bigint, bigint][] = [
      [0x04n, 31n], // CFGI_STE_RANGE, Range 31 = CFGI_ALL
      [0x30n, 0n], // TLBI_NSNH_ALL
      [0x46n, 0n], // CMD_SYNC
    ];
    const out: string[] = [];
    const size = 2 ** ARM.qLog2;
    for (const [w0, w1] of cmds) {
      const at = ARM.cmdq + (this.#cmdProd % size) * 16;
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(w0, 0);
      b.writeBigUInt64LE(w1, 8);
      out.push(QTest.writeCmd(at, b));
      this.#cmdProd = (this.#cmdProd + 1) % (2 * size);
    }
    out.push(
      `writel ${hx(ARM.smmu + R.CMDQ_PROD)} ${hx(this.#cmdProd)}`,
      `readl ${hx(ARM.smmu + R.CMDQ_CONS)}`,
    );
    const a = await this.q.run(out);
    const cons = Number(BigInt(a[a.length - 1]!));
    if (cons !== this.#cmdProd)
      throw new Error(`command queue stuck: CONS ${hx(cons)} PROD ${hx(this.#cmdProd)}`);
  }

  async run(s: SmmuScenario, tokens: (i: number) => bigint, blank: bigint): Promise<RawEvt[]> {
    const q = this.q;
    await q.run([`writel ${hx(ARM.smmu + R.CR0)} ${hx(0x8 | 0x4)}`]); // SMMUEN off: bypass
    await loadScenario(this, this.#lastImage, s.img, ARM.scratch, ARM.bars, tokens, blank);
    await q.run([
      `writeq ${hx(ARM.smmu + R.STRTAB_BASE)} ${hx(s.strtabBase)}`,
      `writel ${hx(ARM.smmu + R.STRTAB_BASE_CFG)} ${hx(s.strtabCfg)}`,
      `writel ${hx(ARM.smmu + R.CR0)} ${hx(CR0_ON)}`,
    ]);
    await this.invalidateAll();
    const out: RawEvt[] = [];
    const slots = [0, 0];
    let prod = this.#evtCons;
    for (const r of s.reqs) {
      const bar = ARM.bars[r.dev]!;
      const e = r.dev;
      const slot = r.write ? 256 + (slots[e]! % 255) : slots[e]! % 256;
      slots[e]!++;
      const buf = 0x40000 + slot * 8;
      await q.run(r.write ? VtdRig.dma(bar, buf, r.iova, 8, true) : VtdRig.dma(bar, r.iova, buf, 8, false));
      const [p] = await this.wait(bar, [`readl ${hx(ARM.smmu + R.EVENTQ_PROD)}`]);
      const now = Number(BigInt(p!)) & (2 ** (ARM.eLog2 + 1) - 1);
      const events: number[] = [];
      while (prod !== now) {
        events.push(prod);
        prod = (prod + 1) % 2 ** (ARM.eLog2 + 1);
      }
      out.push({ slot, events });
    }
    // Read every new event and consume them.
    const evq = await q.read(ARM.evtq, 32 * 2 ** ARM.eLog2);
    for (const o of out)
      o.records = o.events.map((i) =>
        evq.subarray((i % 2 ** ARM.eLog2) * 32, (i % 2 ** ARM.eLog2) * 32 + 32),
      );
    this.#evtCons = prod;
    await q.run([
      `writel ${hx(ARM.smmu + R.EVENTQ_CONS)} ${hx(prod)}`,
      `writel ${hx(ARM.smmu + R.CR0)} ${hx(0x8 | 0x4)}`,
    ]);
    const gerror = await q.readl(ARM.smmu + R.GERROR);
    if (gerror !== 0) throw new Error(`SMMU GERROR ${hx(gerror)}`);
    return out;
  }

  async buffer(e: number): Promise<Buffer> {
    const dst = ARM.scratch + e * 0x2000 + 0x1000;
    await this.q.run(VtdRig.dma(ARM.bars[e]!, 0x40000, dst, 4088, true));
    await this.wait(ARM.bars[e]!);
    return this.q.read(dst, 4096);
  }
}

export interface RawEvt {
  readonly slot: number;
  readonly events: number[];
  records?: Uint8Array[];
}

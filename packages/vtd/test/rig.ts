/**
 * A hand-built VT-d setup for hardware-model tests: memory with RAM [0, 1 GiB), a
 * hardware unit with default registers, and helpers that write root / context / PASID
 * entries and paging entries with the codecs, as someone else's driver would.
 */

import { PhysicalMemory } from "@iommu-kit/core";
import { encodeContextEntry, encodeScalableContextEntry } from "../src/format/context-entry.ts";
import type { FsEntry } from "../src/format/fs-pte.ts";
import { encodeFsEntry } from "../src/format/fs-pte.ts";
import type { PasidEntry } from "../src/format/pasid-entry.ts";
import { EMPTY_PASID_ENTRY, encodePasidDirEntry, encodePasidEntry, Pgtt } from "../src/format/pasid-entry.ts";
import { Gcmd, Reg } from "../src/format/registers.ts";
import { encodeRootEntry, encodeScalableRootEntry } from "../src/format/root-entry.ts";
import type { SsEntry } from "../src/format/ss-pte.ts";
import { encodeSsEntry } from "../src/format/ss-pte.ts";
import { VtdHardware } from "../src/hardware.ts";
import type { VtdConfig } from "../src/hw-info.ts";
import { registersFor, resolveConfig } from "../src/hw-info.ts";

export const RAM = 0x4000_0000;
export const ROOT = 0x10_0000;
export const CTX = 0x10_1000;
export const CTX_UPPER = 0x10_2000;
export const DIR = 0x10_4000;
export const PTBL = 0x10_8000;
export const SID = 0x0010;

/** A zero second-stage entry template. */
export const SS0: SsEntry = {
  r: false,
  w: false,
  x: false,
  ps: false,
  a: false,
  d: false,
  snp: false,
  addr: 0,
};
/** A zero first-stage entry template. */
export const FS0: FsEntry = {
  p: false,
  rw: false,
  us: false,
  pwt: false,
  pcd: false,
  a: false,
  d: false,
  ps: false,
  g: false,
  ea: false,
  addr: 0,
  xd: false,
};

export interface Rig {
  readonly memory: PhysicalMemory;
  readonly hw: VtdHardware;
  readonly scalable: boolean;
  /** Bump-allocates a zeroed 4K page for tables. */
  page(): number;
  w64(pa: number, v: bigint): void;
  /** Legacy: root entry for bus 0 and the context entry of `sid`. */
  legacyContext(e: Partial<Parameters<typeof encodeContextEntry>[0]>, sid?: number): void;
  /** Scalable: root, context (PASID directory at DIR, PDTS 7) and dir entry for PASID table PTBL. */
  scalableContext(e?: Partial<Parameters<typeof encodeScalableContextEntry>[0]>, sid?: number): void;
  /** Writes the PASID table entry of `pasid` (table PTBL covers PASIDs 0-63 of dir entry 0). */
  pasidEntry(pasid: number, e: Partial<PasidEntry>): void;
  /** Maps one page in a second-stage table at `root` (levels deep), leaf at `leafLevel`. */
  ssMap(root: number, levels: number, iova: number, leaf: Partial<SsEntry>, leafLevel?: number): number[];
  /** Maps one page in a first-stage table at `root`; `table` overrides non-leaf entries. */
  fsMap(
    root: number,
    levels: number,
    iova: number,
    leaf: Partial<FsEntry>,
    leafLevel?: number,
    table?: Partial<FsEntry>,
    gpaOf?: (hpa: number) => number,
  ): number[];
}

/**
 * A hardware unit over fresh memory, translation enabled, root table at ROOT.
 * `ecapClear` clears ECAP bits the config cannot (e.g. DT, bit 2).
 */
export function rig(config: VtdConfig & { haw?: number } = {}, ecapClear = 0n): Rig {
  const c = resolveConfig({ haw: 48, ...config });
  const regs = registersFor(c);
  const cap = regs.cap;
  const ecap = regs.ecap & ~ecapClear;
  const memory = new PhysicalMemory([{ base: 0, size: RAM }]);
  const hw = new VtdHardware(memory, { cap, ecap, haw: c.haw, iotlbSizeLg2: c.iotlbSizeLg2 });
  hw.writeRegister(Reg.RTADDR, BigInt(ROOT) | (c.scalable ? 1n << 10n : 0n));
  hw.writeRegister(Reg.GCMD, BigInt(Gcmd.SRTP), 4);
  hw.writeRegister(Reg.GCMD, BigInt(Gcmd.TE >>> 0), 4);
  hw.writeRegister(Reg.FECTL, 0n, 4);
  let next = 0x20_0000;
  const w64 = (pa: number, v: bigint): void => memory.write64(pa, v);
  const page = (): number => {
    const p = next;
    next += 4096;
    return p;
  };
  const r: Rig = {
    memory,
    hw,
    scalable: c.scalable,
    page,
    w64,
    legacyContext(e, sid = SID) {
      const [lo, hi] = encodeRootEntry({ present: true, ctp: CTX });
      w64(ROOT + (sid >>> 8) * 16, lo);
      w64(ROOT + (sid >>> 8) * 16 + 8, hi);
      const words = encodeContextEntry({ present: true, fpd: false, tt: 0, slptptr: 0, aw: 2, did: 1, ...e });
      w64(CTX + (sid & 0xff) * 16, words[0]);
      w64(CTX + (sid & 0xff) * 16 + 8, words[1]);
    },
    scalableContext(e = {}, sid = SID) {
      const [lo, hi] = encodeScalableRootEntry({
        lowerPresent: true,
        lowerCtp: CTX,
        upperPresent: true,
        upperCtp: CTX_UPPER,
      });
      w64(ROOT + (sid >>> 8) * 16, lo);
      w64(ROOT + (sid >>> 8) * 16 + 8, hi);
      const words = encodeScalableContextEntry({
        present: true,
        fpd: false,
        dte: false,
        paside: true,
        pre: false,
        pdts: 7,
        pasidDirPtr: DIR,
        ridPasid: 0,
        ridPriv: false,
        ...e,
      });
      const base = ((sid & 0xff) >= 128 ? CTX_UPPER : CTX) + (sid & 0x7f) * 32;
      words.forEach((w, i) => {
        w64(base + i * 8, w);
      });
      w64(DIR, encodePasidDirEntry({ present: true, fpd: false, tablePtr: PTBL }));
    },
    pasidEntry(pasid, e) {
      const words = encodePasidEntry({
        ...EMPTY_PASID_ENTRY,
        present: true,
        pgtt: Pgtt.SECOND_STAGE,
        aw: 2,
        did: 1,
        pwsnp: true,
        sre: true,
        ...e,
      });
      words.forEach((w, i) => {
        w64(PTBL + (pasid & 0x3f) * 64 + i * 8, w);
      });
    },
    ssMap(root, levels, iova, leaf, leafLevel = 0) {
      const path: number[] = [];
      let table = root;
      for (let level = levels - 1; level > leafLevel; level--) {
        const ea = table + (Math.floor(iova / 2 ** (12 + 9 * level)) % 512) * 8;
        path.push(ea);
        const cur = memory.read64(ea);
        if ((cur & 3n) !== 0n) {
          table = Number((cur >> 12n) & 0xffffffffffn) * 4096;
          continue;
        }
        const t = page();
        w64(ea, encodeSsEntry({ ...SS0, r: true, w: true, addr: t }));
        table = t;
      }
      const ea = table + (Math.floor(iova / 2 ** (12 + 9 * leafLevel)) % 512) * 8;
      path.push(ea);
      w64(ea, encodeSsEntry({ ...SS0, r: true, w: true, ps: leafLevel > 0, ...leaf }));
      return path;
    },
    fsMap(root, levels, iova, leaf, leafLevel = 0, tableE = {}, gpaOf = (x) => x) {
      const path: number[] = [];
      let table = root;
      for (let level = levels - 1; level > leafLevel; level--) {
        const ea = table + (Math.floor(iova / 2 ** (12 + 9 * level)) % 512) * 8;
        path.push(ea);
        const cur = memory.read64(ea);
        if ((cur & 1n) !== 0n) {
          table = Number((cur >> 12n) & 0xffffffffffn) * 4096;
          continue;
        }
        const t = page();
        w64(ea, encodeFsEntry({ ...FS0, p: true, rw: true, us: true, a: true, addr: gpaOf(t), ...tableE }));
        table = t;
      }
      const ea = table + (Math.floor(iova / 2 ** (12 + 9 * leafLevel)) % 512) * 8;
      path.push(ea);
      w64(
        ea,
        encodeFsEntry({ ...FS0, p: true, rw: true, us: true, a: true, d: true, ps: leafLevel > 0, ...leaf }),
      );
      return path;
    },
  };
  return r;
}

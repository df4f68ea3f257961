/**
 * A host over a real SMMUv3 for the vIOMMU and IOPF tests: a guest IOAS mapping IPA
 * [0, 16 MiB) to PA 0x1000_0000, a nest-parent HWPT over it, a guest CD table at IPA
 * 0x1000 (CD 0: ASID 42, TTB0 IPA 0x10_0000) and guest stage-1 tables mapping IOVA
 * 0x1000 to IPA 0x50_0000; and a reader of the commands the SMMU driver put in its
 * command queue (read back from queue memory between two CMDQ_PROD values).
 */

import { BackendRegistry, Perm } from "@iommu-kit/core";
import { mockBackend } from "@iommu-kit/core/testing";
import type { SmmuV3Backend, SmmuV3Config } from "@iommu-kit/smmuv3";
import { encodeCd, encodeLeafPte, encodeTablePte } from "@iommu-kit/smmuv3";
import { Host } from "../src/index.ts";

/** PA of guest IPA `ipa`. */
export const hpa = (ipa: number): number => ipa + 0x1000_0000;

/** vSTE word 0: V, Config = stage 1 (0b101), S1ContextPtr = IPA 0x1000, S1CDMax = 2 (IHI 0070 5.2). */
export const VSTE0: bigint = 1n | (5n << 1n) | 0x1000n | (2n << 59n);
/** vSTE word 1: S1DSS = 0b10 (traffic without a PASID uses CD 0). */
export const VSTE1: bigint = 2n;

/** The host, its SMMU, the guest's objects and the command-queue reader. */
export interface SmmuRig {
  readonly h: Host;
  readonly b: SmmuV3Backend;
  /** Device rid 0x10 (and `dev2`, rid 0x11) behind smmu0. */
  readonly dev: number;
  readonly dev2: number;
  readonly ioas: number;
  /** The nest-parent paging HWPT over the guest IOAS. */
  readonly parent: number;
  /** Commands written to the queue since the last call, in order. */
  trace(): [bigint, bigint][];
}

/** A fresh rig (`config` for smmu0; `canStall` for its devices). */
export async function smmuRig(config: SmmuV3Config = {}, canStall = false): Promise<SmmuRig> {
  const registry = new BackendRegistry();
  registry.register(mockBackend);
  const h = new Host({
    registry,
    ram: [{ base: 0, size: 2 ** 32 }],
    tables: { base: 2 ** 32, size: 2 ** 27 },
  });
  await h.loadBackend("smmuv3");
  const b = h.addIommu("smmu0", "smmuv3", config) as SmmuV3Backend;
  const dev = h.addDevice({ iommu: "smmu0", rid: 0x10, pasidBits: 20, canStall });
  const dev2 = h.addDevice({ iommu: "smmu0", rid: 0x11, pasidBits: 20, canStall });
  const ioas = h.ioasAlloc();
  h.ioasMap(ioas, { iova: 0, length: 0x100_0000, pa: 0x1000_0000, prot: Perm.R | Perm.W });
  const parent = h.hwptAlloc({ device: dev, pt: ioas, flags: ["nest_parent"] });
  const cd = encodeCd({ V: 1, T0SZ: 16, EPD1: 1, IPS: 5, AA64: 1, R: 1, A: 1, ASID: 42, TTB0: 0x10_0000 });
  const w64 = (pa: number, v: bigint): void => {
    const x = new Uint8Array(8);
    new DataView(x.buffer).setBigUint64(0, v, true);
    h.memWrite(pa, x);
  };
  for (let i = 0; i < 8; i++) w64(hpa(0x1000) + i * 8, cd[i]!);
  w64(hpa(0x10_0000), encodeTablePte(0x10_1000n));
  w64(hpa(0x10_1000), encodeTablePte(0x10_2000n));
  w64(hpa(0x10_2000), encodeTablePte(0x10_3000n));
  w64(hpa(0x10_3000) + 8, encodeLeafPte(0x50_0000n, 3, { ap: 1, ng: 1 }));
  const base = Number(b.hw.readRegister("CMDQ_BASE") & 0x000f_ffff_ffff_ffe0n);
  const size = 2 ** Number(b.hw.readRegister("CMDQ_BASE") & 0x1fn);
  let from = b.hw.cmdqProd;
  const trace = (): [bigint, bigint][] => {
    const out: [bigint, bigint][] = [];
    const to = b.hw.cmdqProd;
    for (let p = from; p !== to; p = (p + 1) & (2 * size - 1)) {
      const at = base + (p & (size - 1)) * 16;
      out.push([h.memory.read64(at), h.memory.read64(at + 8)]);
    }
    from = to;
    return out;
  };
  return { h, b, dev, dev2, ioas, parent, trace };
}

/** Writes a 64-bit word at a guest IPA. */
export function guestWrite64(h: Host, ipa: number, v: bigint): void {
  const x = new Uint8Array(8);
  new DataView(x.buffer).setBigUint64(0, v, true);
  h.memWrite(hpa(ipa), x);
}

/** Hex of 64-bit little-endian words, as the vEVENTQ record bytes. */
export function le64(...words: bigint[]): Uint8Array {
  const out = new Uint8Array(words.length * 8);
  const v = new DataView(out.buffer);
  for (const [i, w] of words.entries()) v.setBigUint64(i * 8, w, true);
  return out;
}

/** The errno and details of a throwing call (or "none"). */
export function err(fn: () => unknown): { code: string; details: Record<string, unknown> } | "none" {
  try {
    fn();
  } catch (e) {
    const x = e as { code?: string; details?: Record<string, unknown> };
    return { code: x.code ?? String(e), details: x.details ?? {} };
  }
  return "none";
}

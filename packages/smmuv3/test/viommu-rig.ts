/**
 * A driver-owned SMMU for the vIOMMU and stall tests, with a reader of the commands the
 * driver put in the command queue (read back from queue memory between two CMDQ_PROD
 * values) and a guest: a nest parent mapping IPA [0, 16M) to HPA 0x1000_0000, a guest CD
 * table at IPA 0x1000 (CD 1: ASID 42) and guest stage-1 tables mapping IOVA 0x1000 to
 * IPA 0x50_0000.
 */

import type {
  Domain,
  PhysicalMemory,
  TableAllocator,
  Translation,
  TranslationOutcome,
} from "@iommu-kit/core";
import { createTranslation, outcomeOf, Perm } from "@iommu-kit/core";
import { createTestMemory } from "@iommu-kit/core/testing";
import type { SmmuPagingDomain, SmmuV3Config, SmmuViommu } from "../src/index.ts";
import {
  encodeCd,
  encodeLeafPte,
  encodeTablePte,
  registersFor,
  SmmuV3Backend,
  smmuv3Backend,
} from "../src/index.ts";

/** A backend, its memory, a translate helper and the command-queue reader. */
export interface VRig {
  readonly memory: PhysicalMemory;
  readonly tables: TableAllocator;
  readonly b: SmmuV3Backend;
  x(rid: number, pasid: number, iova: number, access: number): TranslationOutcome;
  /** The commands written to the queue since the last call (the driver's submissions, in order). */
  trace(): [bigint, bigint][];
}

/** A backend (from the factory, or over `registers` overriding registersFor(config)). */
export function vrig(config: SmmuV3Config = {}, registers?: Record<string, bigint>): VRig {
  const { memory, tables } = createTestMemory(2 ** 32, 2 ** 28);
  let b: SmmuV3Backend;
  if (registers !== undefined) {
    b = new SmmuV3Backend(memory, tables, "smmu0", { ...registersFor(config), ...registers }, 14);
    b.initDriver(config);
  } else b = smmuv3Backend.create({ memory, tables, name: "smmu0" }, config) as SmmuV3Backend;
  const x = (rid: number, pasid: number, iova: number, access: number): TranslationOutcome => {
    const out: Translation = createTranslation();
    return outcomeOf(b.translate(rid, pasid, iova, access, out), out);
  };
  const base = Number(b.hw.readRegister("CMDQ_BASE") & 0x000f_ffff_ffff_ffe0n);
  const size = 2 ** Number(b.hw.readRegister("CMDQ_BASE") & 0x1fn);
  let from = b.hw.cmdqProd;
  const trace = (): [bigint, bigint][] => {
    const out: [bigint, bigint][] = [];
    const to = b.hw.cmdqProd;
    for (let p = from; p !== to; p = (p + 1) & (2 * size - 1)) {
      const at = base + (p & (size - 1)) * 16;
      out.push([memory.read64(at), memory.read64(at + 8)]);
    }
    from = to;
    return out;
  };
  return { memory, tables, b, x, trace };
}

/** HPA of a guest IPA. */
export const hpa = (ipa: number): number => ipa + 0x1000_0000;

/** vSTE word 0: V, Config = stage 1, S1ContextPtr = IPA 0x1000, S1CDMax = 2. */
export const VSTE0: bigint = 1n | (5n << 1n) | 0x1000n | (2n << 59n);
/** vSTE word 1: S1DSS = SSID0. */
export const VSTE1: bigint = 2n;

/** A nest parent over guest RAM and a guest CD table + stage 1 in it (`cdExtra`: more CD 1 fields). */
export function guestMemory(r: VRig, cdExtra: Record<string, number> = {}): SmmuPagingDomain {
  const { b, memory } = r;
  const parent = b.allocDomain({ type: "paging", flags: { nestParent: true } }) as SmmuPagingDomain;
  parent.map(0, 0x1000_0000, 0x100_0000, Perm.R | Perm.W);
  const cd = encodeCd({
    V: 1,
    T0SZ: 16,
    EPD1: 1,
    IPS: 5,
    AA64: 1,
    R: 1,
    A: 1,
    ASID: 42,
    TTB0: 0x10_0000,
    ...cdExtra,
  });
  for (let i = 0; i < 8; i++) memory.write64(hpa(0x1000 + 64) + i * 8, cd[i]!);
  memory.write64(hpa(0x10_0000), encodeTablePte(0x10_1000n));
  memory.write64(hpa(0x10_1000), encodeTablePte(0x10_2000n));
  memory.write64(hpa(0x10_2000), encodeTablePte(0x10_3000n));
  memory.write64(hpa(0x10_3000) + 8, encodeLeafPte(0x50_0000n, 3, { ap: 1, ng: 1 }));
  return parent;
}

/** A guest: its nest parent, vIOMMU and attached nested domain. */
export interface Guest {
  readonly parent: SmmuPagingDomain;
  readonly viommu: SmmuViommu;
  readonly dom: Domain;
}

/** Device `rid` with vSID `vsid` on a vIOMMU, attached to the guest's stage-1 vSTE. */
export function guest(r: VRig, rid = 8, vsid = 0x99, cdExtra: Record<string, number> = {}): Guest {
  r.b.addDevice({ rid, pasidBits: 20 });
  const parent = guestMemory(r, cdExtra);
  const viommu = r.b.allocViommu({ type: "arm-smmuv3", rid, parent }) as SmmuViommu;
  viommu.addVdevice(rid, vsid);
  const dom = viommu.allocNested({ ste: [VSTE0, VSTE1] }, {});
  r.b.attach(rid, { kind: "rid-all-pasids" }, dom);
  r.trace();
  return { parent, viommu, dom };
}

/** The 8 STE words of `sid` as the SMMU reads them (from `describe`). */
export function steWords(b: SmmuV3Backend, sid: number): bigint[] {
  const step = b.hw.describe(sid).find((s) => s.what === "STE" && s.raw !== undefined);
  return (step?.raw ?? []).map((h) => BigInt(h));
}

/** Catches the code and details of an IommuError (or "none"). */
export function err(fn: () => unknown): { code: string; details?: Record<string, unknown> } | "none" {
  try {
    fn();
  } catch (e) {
    const x = e as { code?: string; details?: Record<string, unknown> };
    return { code: x.code ?? String(e), details: x.details ?? {} };
  }
  return "none";
}

/** The errno of a throwing call (or "none"). */
export function code(fn: () => unknown): string {
  const e = err(fn);
  return e === "none" ? "none" : e.code;
}

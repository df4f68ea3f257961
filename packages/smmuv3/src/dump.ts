/**
 * `dump()` of the SMMUv3 backend: registers, counters, and per StreamID the walk of its
 * STE (ARM IHI 0070 5.2) with the decoded STE and valid CDs (5.4), plus the vIOMMUs
 * (VMID, nest parent, vSID table). A JSON-able tree for `iommu-kit dump`; it reads
 * memory only (no cache, counter or event changes).
 */

import type { CacheCounters, PhysicalMemory } from "@iommu-kit/core";
import { hex } from "@iommu-kit/core";
import { decodeCd } from "./format/cd.ts";
import { decodeSte } from "./format/ste.ts";
import type { SmmuHw } from "./hardware.ts";

/** What the dump reads of a backend. */
export interface DumpSource {
  readonly kind: string;
  readonly name: string;
  readonly hw: SmmuHw;
  readonly memory: PhysicalMemory;
  counters(): CacheCounters;
}

/** A device as the dump sees it: its PASIDs and whether it has a CD table, and where CD `ssid` is. */
export interface DumpedDevice {
  readonly ssids: readonly number[];
  cdAddr(ssid: number): number | null;
}

/** A vIOMMU as the dump shows it. */
export interface DumpedViommu {
  readonly id: number;
  readonly vmid: number;
  readonly parent: number;
  readonly vdevices: readonly { readonly rid: number; readonly vsid: number }[];
}

/** StreamIDs with a live (not abort, valid) STE, for a dump without known devices. */
function scanSids(hw: SmmuHw): number[] {
  const out: number[] = [];
  const limit = Math.min(2 ** Math.min(hw.sidBits, 12), 4096);
  for (let sid = 0; sid < limit; sid++) {
    const steps = hw.describe(sid);
    const ste = steps.find((s) => s.what === "STE");
    if (ste !== undefined && !ste.note.startsWith("abort") && !ste.note.includes("V=0")) out.push(sid);
  }
  return out;
}

/** The dump of `src` (one StreamID, or every device, or every live STE of a snapshot). */
export function dumpSmmu(
  src: DumpSource,
  devices: ReadonlyMap<number, DumpedDevice>,
  viommus: readonly DumpedViommu[],
  rid?: number,
): unknown {
  const regs = Object.fromEntries(Object.entries(src.hw.registers()).map(([k, v]) => [k, hex(v)]));
  const one = (sid: number): unknown => {
    const dev = devices.get(sid);
    const steps = src.hw.describe(sid);
    const cds: Record<string, unknown> = {};
    for (const ssid of dev?.ssids ?? []) {
      const at = dev!.cdAddr(ssid);
      if (at === null) continue;
      const w: bigint[] = [];
      for (let i = 0; i < 8; i++) w.push(src.memory.read64(at + i * 8));
      const f = decodeCd(w);
      if (f.V === 1n) cds[ssid] = Object.fromEntries(Object.entries(f).map(([k, v]) => [k, hex(v)]));
    }
    let ste: unknown = null;
    const steStep = steps.find((s) => s.what === "STE" && s.raw !== undefined);
    if (steStep?.raw)
      ste = Object.fromEntries(
        Object.entries(decodeSte(steStep.raw.map((r) => BigInt(r)))).map(([k, v]) => [k, hex(v)]),
      );
    return { streamId: sid, steps, ste, cds };
  };
  const sids = rid !== undefined ? [rid] : devices.size > 0 ? [...devices.keys()] : scanSids(src.hw);
  return {
    kind: src.kind,
    name: src.name,
    registers: regs,
    counters: src.counters(),
    streams: sids.map(one),
    ...(viommus.length > 0 ? { viommus } : {}),
  };
}

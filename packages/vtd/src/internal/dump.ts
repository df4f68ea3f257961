/**
 * Decoded dumps of a unit's structures as JSON-able data, in the spirit of Linux's
 * intel-iommu debugfs files dmar_translation_struct (root/context/PASID entries per
 * device) and domain_translation_struct (one row per present leaf with the raw entry
 * of every level: PML5E, PML4E, PDPE, PDE, PTE). Hostile tables are bounded by a
 * visit budget.
 */

import type { PhysicalMemory } from "@iommu-kit/core";
import { decodeContextEntry, decodeScalableContextEntry } from "../format/context-entry.ts";
import { decodePasidDirEntry, decodePasidEntry, Pgtt } from "../format/pasid-entry.ts";
import { decodeRootEntry, decodeScalableRootEntry } from "../format/root-entry.ts";
import type { VtdHardware } from "../hardware.ts";
import { hex64, readWords } from "./words.ts";

const LEVEL_NAMES = ["PTE", "PDE", "PDPE", "PML4E", "PML5E"];
const MAX_ROWS = 4096;
const MAX_VISITS = 200_000;

/** One present leaf of a table (domain_translation_struct row). */
export interface LeafRow {
  readonly IOVA_PFN: string;
  readonly size: string;
  readonly entries: Readonly<Record<string, string>>;
}

/** Lists the present leaves of a second-stage ("ss") or first-stage ("fs") table. */
export function dumpTable(
  memory: PhysicalMemory,
  root: number,
  levels: number,
  kind: "ss" | "fs",
): LeafRow[] {
  const rows: LeafRow[] = [];
  let visits = 0;
  const path: string[] = [];
  const visit = (table: number, level: number, base: number): void => {
    for (let i = 0; i < 512 && rows.length < MAX_ROWS && visits < MAX_VISITS; i++) {
      visits++;
      const ea = table + i * 8;
      const page = memory.readPage(Math.floor(ea / 4096));
      if (page === null) return;
      const w = (ea & 0xfff) >>> 2;
      const lo = page[w]!;
      const hi = page[w + 1]!;
      const present = kind === "ss" ? (lo & 3) !== 0 : (lo & 1) !== 0;
      if (!present) continue;
      const iova = base + i * 2 ** (12 + 9 * level);
      path[level] = hex64((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
      const leaf = level === 0 || (lo & 0x80) !== 0;
      if (leaf) {
        const entries: Record<string, string> = {};
        for (let l = levels - 1; l >= level; l--) entries[LEVEL_NAMES[l]!] = path[l]!;
        rows.push({ IOVA_PFN: `0x${(iova / 4096).toString(16)}`, size: `2^${12 + 9 * level}`, entries });
      } else {
        const next = (hi & 0xfffff) * 4294967296 + ((lo & 0xfffff000) >>> 0);
        visit(next, level - 1, iova);
      }
    }
  };
  visit(root, levels - 1, 0);
  return rows;
}

/** The whole unit (or one source-id) as dmar_translation_struct-like data. */
export function dumpUnit(hw: VtdHardware, memory: PhysicalMemory, onlySid?: number): unknown {
  const scalable = hw.ttm === 1;
  const devices: unknown[] = [];
  for (let bus = 0; bus < 256; bus++) {
    if (onlySid !== undefined && bus !== onlySid >>> 8) continue;
    const rw = readWords(memory, hw.rta + bus * 16, 2);
    if (rw === null) continue;
    for (let devfn = 0; devfn < 256; devfn++) {
      const sid = (bus << 8) | devfn;
      if (onlySid !== undefined && sid !== onlySid) continue;
      if (!scalable) {
        const r = decodeRootEntry(rw);
        if (!r.present) break;
        const cw = readWords(memory, r.ctp + devfn * 16, 2);
        if (cw === null) continue;
        const c = decodeContextEntry(cw);
        if (!c.present) continue;
        devices.push({
          sid: bdf(sid),
          root_entry: rw.map(hex64),
          context_entry: cw.map(hex64),
          context: c,
          translation: c.tt === 2 ? "pass-through" : dumpTable(memory, c.slptptr, c.aw + 2, "ss"),
        });
        continue;
      }
      const r = decodeScalableRootEntry(rw);
      const upper = devfn >= 128;
      if (!(upper ? r.upperPresent : r.lowerPresent)) continue;
      const ctp = upper ? r.upperCtp : r.lowerCtp;
      const cw = readWords(memory, ctp + (devfn & 0x7f) * 32, 4);
      if (cw === null) continue;
      const c = decodeScalableContextEntry(cw);
      if (!c.present) continue;
      const pasids: unknown[] = [];
      const dirEntries = Math.min(2 ** (c.pdts + 7), 16384);
      for (let di = 0; di < dirEntries && pasids.length < 256; di++) {
        const dw = readWords(memory, c.pasidDirPtr + di * 8, 1);
        if (dw === null) break;
        const d = decodePasidDirEntry(dw[0]!);
        if (!d.present) continue;
        for (let pi = 0; pi < 64; pi++) {
          const pw = readWords(memory, d.tablePtr + pi * 64, 8);
          if (pw === null) break;
          const e = decodePasidEntry(pw);
          if (!e.present) continue;
          const pasid = di * 64 + pi;
          const table =
            e.pgtt === Pgtt.SECOND_STAGE
              ? dumpTable(memory, e.ssptptr, e.aw + 2, "ss")
              : e.pgtt === Pgtt.FIRST_STAGE
                ? dumpTable(memory, e.fsptptr, e.fspm === 1 ? 5 : 4, "fs")
                : e.pgtt === Pgtt.NESTED
                  ? {
                      firstStageGpa: `0x${e.fsptptr.toString(16)}`,
                      parent: dumpTable(memory, e.ssptptr, e.aw + 2, "ss"),
                    }
                  : "pass-through";
          pasids.push({ pasid, entry: pw.map(hex64), decoded: e, translation: table });
        }
      }
      devices.push({
        sid: bdf(sid),
        root_entry: rw.map(hex64),
        context_entry: cw.map(hex64),
        context: c,
        pasids,
      });
    }
  }
  return {
    mode: scalable ? "scalable" : "legacy",
    translationEnabled: hw.enabled,
    rootTable: `0x${hw.rta.toString(16)}`,
    devices,
  };
}

function bdf(sid: number): string {
  const bus = sid >>> 8;
  const dev = (sid >>> 3) & 0x1f;
  const fn = sid & 7;
  return `${bus.toString(16).padStart(2, "0")}:${dev.toString(16).padStart(2, "0")}.${fn}`;
}

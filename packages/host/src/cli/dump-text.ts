/**
 * Human-readable `dump` output: the backend's JSON-able tree as YAML, except that page
 * walks listed the way Linux's intel-iommu debugfs lists them (entries with `IOVA_PFN`
 * and the per-level `entries`: PML5E, PML4E, PDPE, PDE, PTE) are printed as that
 * file's table (drivers/iommu/intel/debugfs.c, domain_translation_struct):
 * `IOVA_PFN | PML4E PDPE PDE PTE`, one line per mapped page.
 */

import { stringify as toYaml } from "yaml";
import { termWidth } from "./format.ts";

interface WalkRow {
  readonly IOVA_PFN: string | number;
  readonly entries: Readonly<Record<string, string | number>>;
}

function isWalkRows(v: unknown): v is WalkRow[] {
  return (
    Array.isArray(v) &&
    v.length > 0 &&
    v.every(
      (r) =>
        r !== null &&
        typeof r === "object" &&
        "IOVA_PFN" in r &&
        typeof (r as { entries?: unknown }).entries === "object" &&
        (r as { entries?: unknown }).entries !== null,
    )
  );
}

/**
 * The debugfs-style table of walk rows. When the levels do not fit `width`, they are
 * split into several tables, each led by IOVA_PFN (nothing is cut).
 */
export function walkTable(rows: readonly WalkRow[], width: number = Number.POSITIVE_INFINITY): string {
  const levels: string[] = [];
  for (const r of rows) for (const k of Object.keys(r.entries)) if (!levels.includes(k)) levels.push(k);
  const pfn = (v: string | number): string =>
    `0x${(typeof v === "number" ? v : Number.parseInt(String(v).replace(/^0x/i, ""), 16)).toString(16).padStart(13, "0")}`;
  const cell = (v: string | number | undefined): string =>
    v === undefined
      ? "-".padEnd(18)
      : (typeof v === "number" ? `0x${v.toString(16).padStart(16, "0")}` : v).padEnd(18);
  // IOVA_PFN column (15) + " | " (3), then 18 per level with 2 between.
  const perTable = Math.max(1, Math.floor((width - 18 + 2) / 20));
  const groups: string[][] = [];
  for (let i = 0; i < levels.length; i += perTable) groups.push(levels.slice(i, i + perTable));
  return groups
    .map((g) => {
      const head = `${"IOVA_PFN".padEnd(15)}   ${g.map((l) => l.padEnd(18)).join("  ")}`.trimEnd();
      const lines = rows.map((r) =>
        `${pfn(r.IOVA_PFN)} | ${g.map((l) => cell(r.entries[l])).join("  ")}`.trimEnd(),
      );
      return [head, ...lines].join("\n");
    })
    .join("\n\n");
}

/** `v` with walk rows turned into tables fitting `width`; `ind` is the YAML indent of its keys. */
function transform(v: unknown, ind: number, width: number): unknown {
  if (Array.isArray(v)) return v.map((x) => transform(x, ind + 2, width));
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [
        k,
        // A block scalar's lines are indented 2 past its key; a sequence's items too.
        isWalkRows(x) ? walkTable(x, width - ind - 2) : transform(x, ind + 2, width),
      ]),
    );
  }
  return v;
}

/** The text of a dump tree, fitting `width` where its walk tables can be split. */
export function dumpText(tree: unknown, width: number = termWidth()): string {
  if (typeof tree === "string") return `${tree}\n`;
  if (isWalkRows(tree)) return `${walkTable(tree, width)}\n`;
  return toYaml(transform(tree, 0, width), { lineWidth: 0 });
}

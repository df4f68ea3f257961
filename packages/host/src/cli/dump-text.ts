/**
 * Human-readable `dump` output: the backend's JSON-able tree as YAML, except that page
 * walks listed the way Linux's intel-iommu debugfs lists them (entries with `IOVA_PFN`
 * and the per-level `entries`: PML5E, PML4E, PDPE, PDE, PTE) are printed as that
 * file's table (drivers/iommu/intel/debugfs.c, domain_translation_struct):
 * `IOVA_PFN | PML4E PDPE PDE PTE`, one line per mapped page.
 */

import { stringify as toYaml } from "yaml";

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

/** The debugfs-style table of walk rows. */
export function walkTable(rows: readonly WalkRow[]): string {
  const levels: string[] = [];
  for (const r of rows) for (const k of Object.keys(r.entries)) if (!levels.includes(k)) levels.push(k);
  const pfn = (v: string | number): string =>
    `0x${(typeof v === "number" ? v : Number.parseInt(String(v).replace(/^0x/i, ""), 16)).toString(16).padStart(13, "0")}`;
  const cell = (v: string | number | undefined): string =>
    v === undefined
      ? "-".padEnd(18)
      : (typeof v === "number" ? `0x${v.toString(16).padStart(16, "0")}` : v).padEnd(18);
  const head = `${"IOVA_PFN".padEnd(15)}   ${levels.map((l) => l.padEnd(18)).join("  ")}`.trimEnd();
  const lines = rows.map((r) =>
    `${pfn(r.IOVA_PFN)} | ${levels.map((l) => cell(r.entries[l])).join("  ")}`.trimEnd(),
  );
  return [head, ...lines].join("\n");
}

function transform(v: unknown): unknown {
  if (isWalkRows(v)) return walkTable(v);
  if (Array.isArray(v)) return v.map(transform);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, transform(x)]));
  }
  return v;
}

/** The text of a dump tree. */
export function dumpText(tree: unknown): string {
  if (typeof tree === "string") return `${tree}\n`;
  return toYaml(transform(tree), { lineWidth: 0 });
}

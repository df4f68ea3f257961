/**
 * The one place the CLI formats values, for every command (run, translate, explain,
 * dump, caps), in text and in `--json`:
 *
 * - addresses and register values are 0x hex, lower case (JSON: hex strings);
 * - permissions are letters `r`, `w`, `x` (core `permString`), never a number;
 * - page-table levels carry the spec's names. VT-d: PML5E, PML4E, PDPE, PDE, PTE,
 *   prefixed by the stage (`SS PML4E`, `FS PTE`), as the VT-d spec (3.x, 9.7/9.8 "First-
 *   Stage / Second-Stage Paging Entries") and Linux's debugfs (drivers/iommu/intel/debugfs.c,
 *   domain_translation_struct) name them; the vendor's level numbers map as
 *   L4 = PML5E, L3 = PML4E, L2 = PDPE, L1 = PDE, L0 = PTE. SMMUv3: the VMSAv8-64 lookup
 *   level 0..3 with the stage (`S1 L0` .. `S2 L3`; Arm ARM D8.2, IHI 0070 3.4), unchanged;
 * - a fault is `{class, name, code, recorded, vendor, fields}` everywhere (the scenario
 *   runner's `faultJson`); a fault with no architectural code (VT-d abort-DMA mode,
 *   SMMU abort STE) says so instead of printing a code;
 * - tables fit the terminal: `process.stdout.columns` on a TTY, else `$COLUMNS`, else 80.
 *   The last (free-text) column wraps; a table that still cannot fit is printed as one
 *   block of `name value` lines per row. Nothing is truncated.
 */

import type { WalkStep } from "@iommu-kit/core";
import { permString } from "@iommu-kit/core";
import { jsonable } from "../scenario/values.ts";

/** 0x-prefixed lower-case hex. */
export function hex(v: number | bigint): string {
  return v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`;
}

/** Permission bits as letters ("rw", "rx"; "-" for none). */
export function permLetters(perm: number): string {
  return permString(perm) || "-";
}

/** The output width: the TTY's columns, else $COLUMNS, else 80. */
export function termWidth(): number {
  const cols = process.stdout.isTTY ? process.stdout.columns : undefined;
  if (cols !== undefined && cols > 0) return cols;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env >= 20 ? env : 80;
}

// VT-d level numbers (0 = leaf table) to the spec's entry names.
const VTD_LEVELS = ["PTE", "PDE", "PDPE", "PML4E", "PML5E"];

/** The step name with spec level names (VT-d `SS L3` -> `SS PML4E`); others unchanged. */
export function stepName(backendKind: string, what: string): string {
  if (backendKind !== "vtd") return what;
  const m = /^(SS|FS|SS\(FS table\)|SS\(output\)) L([0-4])$/.exec(what);
  return m === null ? what : `${m[1]} ${VTD_LEVELS[Number(m[2])]}`;
}

/** A step's conclusion with permissions as letters and no pseudo fault codes. */
export function stepNote(note: string): string {
  return (
    note
      // VT-d abort-DMA mode (RTADDR.TTM = 11b, spec 11.4.5) has no fault reason: nothing is recorded.
      .replace(
        /fault 0x-1: Unknown|fault: abort-DMA mode \(RTADDR\.TTM = 11b\)$/,
        "blocked: abort-DMA mode (RTADDR.TTM = 11b), no fault recorded",
      )
      .replace(/\bperm (\d+)\b/, (_, p: string) => `perm ${permLetters(Number(p))}`)
  );
}

/** A walk step as every command prints it: spec names, hex addresses, letter permissions. */
export interface StepOut {
  readonly what: string;
  readonly address: string | null;
  readonly index?: number;
  readonly raw?: readonly string[];
  readonly fields?: Readonly<Record<string, unknown>>;
  readonly note: string;
}

/** Normalises one walk step (the index moves out of `fields` when the vendor put it there). */
export function stepOut(backendKind: string, s: WalkStep): StepOut {
  const fields = s.fields === undefined ? undefined : { ...s.fields };
  let index = s.index;
  if (index === undefined && fields !== undefined && typeof fields.index === "number") {
    index = fields.index;
    delete fields.index;
  }
  return {
    what: stepName(backendKind, s.what),
    address: s.address === null ? null : hex(s.address),
    ...(index !== undefined ? { index } : {}),
    ...(s.raw !== undefined ? { raw: s.raw } : {}),
    ...(fields !== undefined && Object.keys(fields).length > 0 ? { fields: jsonOut(fields) as never } : {}),
    note: stepNote(s.note),
  };
}

// Keys whose numbers are addresses or register values (printed hex).
const ADDRESS_KEY =
  /^(address|pa|iova|ipa|base|start|last|registers?)$|(ptr|Ptr|PTR|addr|Addr|ADDR|Base|BASE|TTB[01]?)$/;

/**
 * A JSON-able copy for output: bigints and byte arrays as jsonable does, and numbers
 * under address-like keys as 0x hex strings, at any depth (iterative: dumps of hostile
 * tables are deep and wide).
 */
export function jsonOut(v: unknown): unknown {
  const root = jsonable(v);
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const x = stack.pop();
    if (Array.isArray(x)) {
      for (const e of x) if (e !== null && typeof e === "object") stack.push(e);
    } else if (x !== null && typeof x === "object") {
      const o = x as Record<string, unknown>;
      for (const [k, e] of Object.entries(o)) {
        if (typeof e === "number" && Number.isInteger(e) && ADDRESS_KEY.test(k)) o[k] = hex(e);
        else if (e !== null && typeof e === "object") stack.push(e);
      }
    }
  }
  return root;
}

/** One line of JSON output. */
export function jsonLine(v: unknown): string {
  return JSON.stringify(jsonOut(v));
}

/** `text` broken into lines of at most `w` characters, at spaces where it can. */
export function wrap(text: string, w: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > w) {
    let cut = rest.lastIndexOf(" ", w);
    if (cut <= 0) cut = w;
    out.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  out.push(rest);
  return out;
}

const GAP = 2;
const MIN_LAST = 16;

/**
 * Aligned columns fitting `width`: the last (free-text) column wraps onto continuation
 * lines; when the other columns alone are too wide, each row becomes a block of
 * `header value` lines instead (nothing is cut).
 */
export function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  width: number = termWidth(),
): string {
  const n = header.length;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const total = widths.reduce((a, b) => a + b, 0) + GAP * (n - 1);
  if (total > width && n > 1) {
    const room = width - (total - widths[n - 1]!);
    if (room < Math.min(widths[n - 1]!, MIN_LAST)) return records(header, rows, width);
    widths[n - 1] = room;
  }
  const fmt = (cells: readonly string[]): string[] => {
    const last = wrap(cells[n - 1] ?? "", widths[n - 1]!);
    const head = cells.slice(0, n - 1).map((c, i) => c.padEnd(widths[i]!));
    const pad = head.map((_, i) => " ".repeat(widths[i]!));
    return last.map((l, j) => [...(j === 0 ? head : pad), l].join(" ".repeat(GAP)).trimEnd());
  };
  return [fmt(header), [widths.map((w) => "-".repeat(w)).join(" ".repeat(GAP))], ...rows.map(fmt)]
    .flat()
    .join("\n");
}

/** Each row as `header value` lines (values wrapped), rows separated by blank lines. */
function records(header: readonly string[], rows: readonly (readonly string[])[], width: number): string {
  const hw = Math.max(...header.map((h) => h.length));
  const vw = Math.max(MIN_LAST, width - hw - GAP);
  return rows
    .map((r) =>
      header
        .flatMap((h, i) =>
          wrap(r[i] ?? "", vw).map((l, j) => `${(j === 0 ? h : "").padEnd(hw)}${" ".repeat(GAP)}${l}`),
        )
        .map((l) => l.trimEnd())
        .join("\n"),
    )
    .join("\n\n");
}

/** A free-text line wrapped to the width, continuation lines indented by `indent`. */
export function wrapLine(text: string, indent: number, width: number = termWidth()): string {
  const lines = wrap(text, Math.max(MIN_LAST, width));
  if (lines.length === 1) return text;
  const first = lines[0]!;
  const rest = wrap(text.slice(first.length).trimStart(), Math.max(MIN_LAST, width - indent));
  return [first, ...rest.map((l) => " ".repeat(indent) + l)].join("\n");
}

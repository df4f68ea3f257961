/**
 * Memory images of a snapshot, by kind: `memory.jsonl` page lists (the layout of
 * fixtures/snapshots: one `{"pa": "0x...", "hex": "<8192 hex digits>"}` per 4 KiB page),
 * ELF64 cores, raw images at a base; and zero-filled RAM declared with `--ram BASE+SIZE`.
 * A JSONL page list is recognised by its extension or its first byte, never read as raw
 * bytes; a short or cut page is an error naming the file and line.
 */

import { readFileSync } from "node:fs";
import { PAGE_SIZE } from "@iommu-kit/core";
import { UsageError } from "./errors.ts";
import { hex } from "./format.ts";
import type { TablePointer } from "./registers.ts";
import type { Segment } from "./snapshot.ts";
import { parseMemoryArg, segmentsOf } from "./snapshot.ts";

/** A declared RAM region (zero-filled where no image covers it). */
export interface RamDecl {
  readonly base: number;
  readonly size: number;
}

const NUM = "(0[xX][0-9a-fA-F]+|[0-9]+)";

/** Parses `--ram BASE+SIZE` (hex or decimal; 4 KiB aligned, below 2^52). */
export function parseRam(arg: string): RamDecl {
  const m = new RegExp(`^${NUM}\\+${NUM}$`).exec(arg.trim());
  if (m === null) throw new UsageError(`--ram ${arg}: expected BASE+SIZE (0x hex or decimal)`);
  const base = BigInt(m[1]!);
  const size = BigInt(m[2]!);
  if (size === 0n) throw new UsageError(`--ram ${arg}: size is 0`);
  if (base % BigInt(PAGE_SIZE) !== 0n || size % BigInt(PAGE_SIZE) !== 0n)
    throw new UsageError(`--ram ${arg}: base and size must be 4 KiB aligned`);
  if (base + size > 2n ** 52n) throw new UsageError(`--ram ${arg}: ends above 2^52`);
  return { base: Number(base), size: Number(size) };
}

/** True when a file holds a JSONL page list (by name, or text starting with `{`). */
export function isPageList(file: string, head: Uint8Array): boolean {
  if (/\.jsonl?$/i.test(file)) return true;
  let i = 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  return head[i] === 0x7b && head[i + 1] === 0x22; // `{"`
}

/** The pages of a JSONL page list. Every line is one whole page; errors name the line. */
export function pageListSegments(text: string, file: string): Segment[] {
  const out: Segment[] = [];
  const lines = text.split("\n");
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "") continue;
    const where = `${file} line ${i + 1}`;
    let j: unknown;
    try {
      j = JSON.parse(line);
    } catch {
      const last = i === lines.length - 1 || lines.slice(i + 1).every((l) => l.trim() === "");
      throw new UsageError(
        `${where}: ${last ? "truncated (the file ends inside a page)" : "not valid JSON"}`,
      );
    }
    const o = j as { pa?: unknown; hex?: unknown };
    if (o === null || typeof o !== "object" || typeof o.pa !== "string" || typeof o.hex !== "string")
      throw new UsageError(`${where}: expected {"pa": "0x...", "hex": "..."}`);
    if (!/^0x[0-9a-fA-F]{1,13}$/.test(o.pa))
      throw new UsageError(`${where}: pa ${JSON.stringify(o.pa)} is not 0x hex below 2^52`);
    const pa = Number(BigInt(o.pa));
    if (pa % PAGE_SIZE !== 0) throw new UsageError(`${where}: pa ${o.pa} is not 4 KiB aligned`);
    if (o.hex.length !== 2 * PAGE_SIZE)
      throw new UsageError(
        `${where}: hex has ${o.hex.length} digits, a 4 KiB page needs ${2 * PAGE_SIZE} (truncated image?)`,
      );
    if (!/^[0-9a-fA-F]*$/.test(o.hex)) throw new UsageError(`${where}: hex has a non-hex character`);
    out.push({ base: pa, size: PAGE_SIZE, data: Buffer.from(o.hex, "hex"), source: file });
  }
  if (out.length === 0) throw new UsageError(`${file}: no pages`);
  return out;
}

/** Progress on stderr, only when it is a terminal. */
export const progress = {
  active: false,
  show(msg: string): void {
    if (!process.stderr.isTTY) return;
    process.stderr.write(`\r\x1b[K${msg}`);
    this.active = true;
  },
  clear(): void {
    if (this.active) process.stderr.write("\r\x1b[K");
    this.active = false;
  },
};

/** The segments of one `--memory FILE[@BASE]` argument. */
export function loadImage(arg: string): Segment[] {
  const { file, base } = parseMemoryArg(arg);
  progress.show(`loading ${file}`);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new UsageError(
      `cannot read memory image ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (isPageList(file, bytes.subarray(0, 16))) {
    if (base !== null)
      throw new UsageError(
        `--memory ${arg}: ${file} is a JSONL page list (each page has its pa): drop @BASE`,
      );
    return pageListSegments(Buffer.from(bytes).toString("utf8"), file);
  }
  return segmentsOf(bytes, file, base);
}

/** A warning per enabled table pointer that no image covers. */
export function pointerWarnings(
  pointers: readonly TablePointer[],
  regs: ReadonlyMap<string, bigint>,
  segments: readonly Segment[],
): string[] {
  const out: string[] = [];
  for (const p of pointers) {
    const v = regs.get(p.reg);
    const en = regs.get(p.enable.reg);
    if (v === undefined || en === undefined || ((en >> p.enable.bit) & 1n) === 0n) continue;
    const pa = Number(v & p.mask);
    if (segments.some((s) => pa >= s.base && pa < s.base + s.size)) continue;
    out.push(`${p.reg} ${hex(pa)} (${p.what}) lies outside every memory image given`);
  }
  return out;
}

/**
 * Snapshot loading for `translate`, `explain` and `dump`: physical memory as raw
 * little-endian images at given bases, or ELF64 core files (QEMU dump-guest-memory,
 * kdump vmcore) whose PT_LOAD segments land at their physical addresses (p_paddr);
 * and register values from a JSON object. Nothing is ever written back to the files:
 * the backend's access/dirty-bit updates go to the in-memory copy.
 *
 * ELF64 layout: System V ABI, "ELF Header" and "Program Header" (e_phoff at 0x20,
 * e_shoff 0x28, e_phentsize 0x36, e_phnum 0x38; Elf64_Phdr p_type 0x00, p_offset 0x08,
 * p_paddr 0x18, p_filesz 0x20, p_memsz 0x28). e_phnum = PN_XNUM (0xffff) means the
 * real count is in section header 0's sh_info (offset 0x2c).
 */

import type { RamRegion } from "@iommu-kit/core";
import { PAGE_SIZE, PhysicalMemory } from "@iommu-kit/core";
import { UsageError } from "./errors.ts";
import { registersFromJson, resolveRegisters } from "./registers.ts";

/** A piece of memory content at a physical address (bytes past `data` up to `size` are zero). */
export interface Segment {
  readonly base: number;
  readonly size: number;
  readonly data: Uint8Array;
  readonly source: string;
}

const PT_LOAD = 1;
const PN_XNUM = 0xffff;

/** True when `bytes` start with the ELF magic. */
export function isElf(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46
  );
}

/** The PT_LOAD segments of an ELF64 little-endian file, at their physical addresses. */
export function elfSegments(bytes: Uint8Array, source: string): Segment[] {
  if (bytes.length < 64) throw new UsageError(`${source}: too short for an ELF64 header`);
  if (bytes[4] !== 2) throw new UsageError(`${source}: not an ELF64 file (EI_CLASS ${bytes[4]})`);
  if (bytes[5] !== 1) throw new UsageError(`${source}: not little-endian (EI_DATA ${bytes[5]})`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u64 = (off: number): number => {
    if (off + 8 > bytes.length) throw new UsageError(`${source}: truncated at offset 0x${off.toString(16)}`);
    const x = v.getBigUint64(off, true);
    if (x > BigInt(Number.MAX_SAFE_INTEGER))
      throw new UsageError(`${source}: value 0x${x.toString(16)} at 0x${off.toString(16)} too large`);
    return Number(x);
  };
  const phoff = u64(0x20);
  const phentsize = v.getUint16(0x36, true);
  let phnum = v.getUint16(0x38, true);
  if (phnum === PN_XNUM) {
    const shoff = u64(0x28);
    if (shoff + 0x30 > bytes.length) throw new UsageError(`${source}: truncated section header 0`);
    phnum = v.getUint32(shoff + 0x2c, true);
  }
  if (phentsize < 56 && phnum > 0) throw new UsageError(`${source}: e_phentsize ${phentsize} < 56`);
  const out: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > bytes.length)
      throw new UsageError(`${source}: program header ${i} is past the end of the file`);
    if (v.getUint32(ph, true) !== PT_LOAD) continue;
    const offset = u64(ph + 0x08);
    const paddr = u64(ph + 0x18);
    const filesz = u64(ph + 0x20);
    const memsz = u64(ph + 0x28);
    if (memsz === 0) continue;
    if (offset + filesz > bytes.length)
      throw new UsageError(
        `${source}: program header ${i} (PT_LOAD) data is past the end of the file: truncated image`,
      );
    out.push({
      base: paddr,
      size: Math.max(memsz, filesz),
      data: bytes.subarray(offset, offset + filesz),
      source,
    });
  }
  if (out.length === 0) throw new UsageError(`${source}: no PT_LOAD segments`);
  return out;
}

/** Parses "FILE@BASE" (BASE hex with 0x, or decimal). */
export function parseMemoryArg(arg: string): { file: string; base: number | null } {
  const at = arg.lastIndexOf("@");
  // "dir@x/file" has no base: the part after the last @ is a path.
  if (at < 0 || arg.slice(at + 1).includes("/")) return { file: arg, base: null };
  const file = arg.slice(0, at);
  const b = arg.slice(at + 1);
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(b))
    throw new UsageError(`--memory ${arg}: base ${JSON.stringify(b)} is not hex (0x...) or decimal`);
  const base = Number(BigInt(b));
  if (!Number.isSafeInteger(base)) throw new UsageError(`--memory ${arg}: base is too large`);
  return { file, base };
}

/** Segments of one --memory argument: an ELF core (no base given) or a raw image (base, default 0). */
export function segmentsOf(bytes: Uint8Array, file: string, base: number | null): Segment[] {
  if (base === null && isElf(bytes)) return elfSegments(bytes, file);
  return [{ base: base ?? 0, size: bytes.length, data: bytes, source: file }];
}

/**
 * The RAM regions covering the segments and the declared `ram`: page-aligned,
 * overlapping or touching ones merged.
 */
export function ramRegionsFor(
  segments: readonly Segment[],
  ram: readonly { base: number; size: number }[] = [],
): RamRegion[] {
  const spans = [...segments, ...ram]
    .filter((s) => s.size > 0)
    .map((s) => ({
      start: s.base - (s.base % PAGE_SIZE),
      end: Math.ceil((s.base + s.size) / PAGE_SIZE) * PAGE_SIZE,
    }))
    .sort((a, b) => a.start - b.start);
  const out: { start: number; end: number }[] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last !== undefined && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out.map((s, i) => ({ base: s.start, size: s.end - s.start, name: `snapshot${i}` }));
}

/**
 * Physical memory holding the segments (later segments win where they overlap).
 * All-zero pages are skipped: never-written RAM reads as zeros anyway.
 */
export function memoryFromSegments(
  segments: readonly Segment[],
  ram: readonly { base: number; size: number }[] = [],
): PhysicalMemory {
  const regions = ramRegionsFor(segments, ram);
  if (regions.length === 0) throw new UsageError("no memory given (--memory FILE[@BASE] or --ram BASE+SIZE)");
  const last = regions[regions.length - 1]!;
  if (last.base + last.size > 2 ** 52)
    throw new UsageError(`memory ends at 0x${(last.base + last.size).toString(16)}, above 2^52`);
  const mem = new PhysicalMemory(regions);
  for (const s of segments) {
    let off = 0;
    while (off < s.data.length) {
      const pa = s.base + off;
      const n = Math.min(PAGE_SIZE - (pa % PAGE_SIZE), s.data.length - off);
      const chunk = s.data.subarray(off, off + n);
      if (chunk.some((b) => b !== 0)) mem.write(pa, chunk);
      else mem.fill(pa, n, 0);
      off += n;
    }
  }
  return mem;
}

/**
 * Register values from a JSON object of the spec's names (no prefix or suffix) to hex
 * strings or numbers, over `defaults`. Unknown names are a usage error that lists the known ones.
 */
export function parseRegisters(
  json: unknown,
  defaults: Readonly<Record<string, bigint>>,
  source: string,
): Record<string, bigint> {
  return resolveRegisters(registersFromJson(json, source), defaults, "").registers;
}

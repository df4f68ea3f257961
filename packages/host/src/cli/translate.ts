/**
 * `iommu-kit translate`: requests against a snapshot (memory images + register values),
 * through a backend's hardware-model-only instance (`fromRegisters`). One JSON line in,
 * one JSON line out: the request echoed, plus `pa` and `perm`, or `fault`.
 */

import type { Backend, BackendFactory, Fault, PhysicalMemory } from "@iommu-kit/core";
import { accessFlags, createTranslation, IommuError, NO_PASID } from "@iommu-kit/core";
import type { FaultJson } from "../scenario/matcher.ts";
import { faultJson } from "../scenario/runner.ts";
import { UsageError } from "./errors.ts";
import { hex, permLetters } from "./format.ts";

/** One parsed request line. */
export interface TranslateRequest {
  readonly sid: number;
  readonly pasid: number | null;
  readonly iova: bigint;
  readonly access: "read" | "write" | "exec";
  readonly priv: boolean;
  /** The line as given, less expected fields (echoed in the output). */
  readonly echo: Readonly<Record<string, unknown>>;
  /** Expected outcome fields (snapshot `expect.jsonl`: pa, perm, fault, reason), when allowed. */
  readonly expect: Readonly<Record<string, unknown>> | null;
  /** Where the line is ("requests line 3"). */
  readonly where: string;
}

const KEYS = new Set(["sid", "rid", "pasid", "iova", "access", "priv"]);
/** Fields of fixtures/snapshots `expect.jsonl` lines (README "File format"). */
const EXPECT_KEYS = new Set(["pa", "perm", "fault", "reason", "observed_reason", "why"]);
/** A StreamID is at most 32 bits (IHI 0070 6.3.2 IDR1.SIDSIZE <= 32); a PASID 20 (PCIe 6.20). */
const SID_LIMIT = 2 ** 32;
const PASID_LIMIT = 2 ** 20;

function intField(v: unknown, what: string, where: string): number {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  if (
    typeof v === "string" &&
    /^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(v) &&
    BigInt(v) <= BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    return Number(BigInt(v));
  }
  throw new UsageError(
    `${where}: ${what} must be a non-negative integer or 0x hex string, got ${JSON.stringify(v)}`,
  );
}

/**
 * Parses one request line (`where` names it in errors, e.g. "requests line 3").
 * With `allowExpect`, the expected-outcome fields of snapshot lines are kept apart.
 */
export function parseRequest(line: string, where: string, allowExpect = false): TranslateRequest {
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch (e) {
    throw new UsageError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  if (j === null || typeof j !== "object" || Array.isArray(j))
    throw new UsageError(`${where}: must be a JSON object`);
  const all = j as Record<string, unknown>;
  const o: Record<string, unknown> = {};
  const expect: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(all)) {
    if (KEYS.has(k)) o[k] = v;
    else if (allowExpect && EXPECT_KEYS.has(k)) expect[k] = v;
    else
      throw new UsageError(
        `${where}: unknown field ${JSON.stringify(k)}${EXPECT_KEYS.has(k) ? " (expected fields need --snapshot or --check)" : ""}`,
      );
  }
  if (o.sid !== undefined && o.rid !== undefined) throw new UsageError(`${where}: give sid or rid, not both`);
  const sidKey = o.sid !== undefined ? "sid" : "rid";
  const sidRaw = o[sidKey];
  if (sidRaw === undefined) throw new UsageError(`${where}: sid is required`);
  const sid = intField(sidRaw, sidKey, where);
  if (sid >= SID_LIMIT) throw new UsageError(`${where}: ${sidKey} ${hex(sid)} is wider than 32 bits`);
  const pasid = o.pasid === undefined || o.pasid === null ? null : intField(o.pasid, "pasid", where);
  if (pasid !== null && pasid >= PASID_LIMIT)
    throw new UsageError(`${where}: pasid ${pasid} is wider than 20 bits`);
  const iv = o.iova;
  let iova: bigint;
  if (typeof iv === "number" && Number.isSafeInteger(iv) && iv >= 0) iova = BigInt(iv);
  else if (typeof iv === "string" && /^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(iv)) iova = BigInt(iv);
  else
    throw new UsageError(
      `${where}: iova must be a 0x hex string or a non-negative integer, got ${JSON.stringify(iv)}`,
    );
  if (iova >= 1n << 64n) throw new UsageError(`${where}: iova does not fit in 64 bits`);
  const access = o.access ?? "read";
  if (access !== "read" && access !== "write" && access !== "exec") {
    throw new UsageError(`${where}: access must be "read", "write" or "exec", got ${JSON.stringify(access)}`);
  }
  const priv = o.priv ?? false;
  if (typeof priv !== "boolean") throw new UsageError(`${where}: priv must be true or false`);
  if (allowExpect) checkExpect(expect, where);
  return { sid, pasid, iova, access, priv, echo: o, expect: allowExpect ? expect : null, where };
}

function checkExpect(e: Record<string, unknown>, where: string): void {
  if (e.fault !== undefined && typeof e.fault !== "boolean")
    throw new UsageError(`${where}: fault must be true or false`);
  if (e.fault === true && e.pa !== undefined)
    throw new UsageError(`${where}: pa and fault: true exclude each other`);
  if (e.pa !== undefined && !(typeof e.pa === "string" && /^0x[0-9a-fA-F]+$/.test(e.pa)))
    throw new UsageError(`${where}: pa must be a 0x hex string`);
  if (e.perm !== undefined && !(typeof e.perm === "string" && /^r?w?x?$/.test(e.perm)))
    throw new UsageError(`${where}: perm must be letters r, w, x`);
  if (
    e.reason !== undefined &&
    e.reason !== null &&
    !(typeof e.reason === "string" && /^0x[0-9a-fA-F]+$/.test(e.reason))
  )
    throw new UsageError(`${where}: reason must be a 0x hex string or null`);
}

/** Longest request text read (a line-per-request file; 64 MiB of lines is far more than any dump). */
export const MAX_REQUEST_BYTES: number = 64 * 2 ** 20;

/** Parses a JSONL request text (blank lines skipped). */
export function parseRequests(text: string, source: string, allowExpect = false): TranslateRequest[] {
  if (text.length > MAX_REQUEST_BYTES)
    throw new UsageError(`${source}: E2BIG: longer than ${MAX_REQUEST_BYTES} bytes`);
  const out: TranslateRequest[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    out.push(parseRequest(line, `${source} line ${i + 1}`, allowExpect));
  });
  return out;
}

/** A fault as every command prints it (the scenario runner's shape). */
export function faultOut(f: Fault): FaultJson {
  return faultJson(f as unknown as Parameters<typeof faultJson>[0]);
}

/**
 * The output of one request: the request echoed plus `pa`/`perm` or `fault`. A backend
 * that refuses the request's numbers (IommuError: a source-id wider than its bus) is bad
 * input at the request's line.
 */
export function translateOne(backend: Backend, r: TranslateRequest): Record<string, unknown> {
  try {
    return { ...r.echo, ...outcomeOf(backend, r) };
  } catch (e) {
    if (e instanceof IommuError) throw new UsageError(`${r.where}: ${fieldOf(e.message)}: ${e.message}`);
    throw e;
  }
}

/** `pa`/`perm`, `fault` or `error` of one request; throws what the backend throws. */
export function outcomeOf(backend: Backend, r: TranslateRequest): Record<string, unknown> {
  const flags = accessFlags(r.access, r.priv);
  const pasid = r.pasid ?? NO_PASID;
  if (r.iova <= BigInt(Number.MAX_SAFE_INTEGER)) {
    const out = createTranslation();
    const ok = backend.translate(r.sid, pasid, Number(r.iova), flags, out);
    if (ok) return { pa: hex(out.pa), perm: permLetters(out.perm) };
    return { fault: faultOut(out.fault!) };
  }
  if (backend.translateBig === undefined)
    return { error: `iova above 2^53 is not supported by ${backend.kind}` };
  const o = backend.translateBig(r.sid, pasid, r.iova, flags);
  if (o.ok) return { pa: hex(o.pa), perm: permLetters(o.perm) };
  return { fault: faultOut(o.fault) };
}

/** The request field an IommuError's message is about. */
function fieldOf(message: string): string {
  if (/pasid|ssid|substream/i.test(message)) return "pasid";
  if (/source-id|\bsid\b|\brid\b|stream|requester/i.test(message)) return "sid";
  return "iova";
}

/**
 * The mismatches of one output against its expected fields (fixtures/snapshots rules):
 * `fault: true` needs a fault, with the code `reason` when it is not null; otherwise a
 * translation to `pa`, with the permission letters of `perm` (x compared only when
 * `perm` names it: the fixtures take R/W from the leaf).
 */
export function checkOne(
  out: Readonly<Record<string, unknown>>,
  e: Readonly<Record<string, unknown>>,
): string[] {
  const f = out.fault as FaultJson | undefined;
  if (e.fault === true) {
    if (f === undefined) return [`expected a fault, got pa ${String(out.pa)}`];
    if (typeof e.reason === "string" && f.code !== Number(e.reason))
      return [`expected fault code ${e.reason}, got ${f.code === null ? "none" : hex(f.code)} (${f.name})`];
    return [];
  }
  if (e.pa === undefined && e.perm === undefined) return [];
  if (f !== undefined) return [`expected pa ${String(e.pa)}, got fault ${f.name} (${f.class})`];
  const m: string[] = [];
  if (e.pa !== undefined && BigInt(String(out.pa)) !== BigInt(String(e.pa)))
    m.push(`pa: expected ${String(e.pa)}, got ${String(out.pa)}`);
  if (typeof e.perm === "string") {
    const got = String(out.perm);
    const have = e.perm.includes("x") ? got : got.replace("x", "");
    if (have !== e.perm) m.push(`perm: expected ${e.perm}, got ${got}`);
  }
  return m;
}

/** A snapshot backend over `memory` with `registers`, from a factory that supports snapshots. */
export function snapshotBackend(
  factory: BackendFactory,
  memory: PhysicalMemory,
  registers: Readonly<Record<string, bigint>>,
): Backend {
  if (factory.fromRegisters === undefined) {
    throw new UsageError(`backend ${factory.name} cannot translate snapshots (no fromRegisters)`);
  }
  return factory.fromRegisters(memory, registers);
}

/**
 * `iommu-kit translate`: requests against a snapshot (memory images + register values),
 * through a backend's hardware-model-only instance (`fromRegisters`). One JSON line in,
 * one JSON line out: the request echoed, plus `pa` and `perm`, or `fault`.
 */

import type { Backend, BackendFactory, Fault, PhysicalMemory } from "@iommu-kit/core";
import { accessFlags, createTranslation, NO_PASID, permString } from "@iommu-kit/core";
import { UsageError } from "./errors.ts";

/** One parsed request line. */
export interface TranslateRequest {
  readonly sid: number;
  readonly pasid: number | null;
  readonly iova: bigint;
  readonly access: "read" | "write" | "exec";
  readonly priv: boolean;
  /** The line as given (echoed in the output). */
  readonly echo: Readonly<Record<string, unknown>>;
}

const KEYS = new Set(["sid", "rid", "pasid", "iova", "access", "priv"]);

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

/** Parses one request line (`where` names it in errors, e.g. "requests line 3"). */
export function parseRequest(line: string, where: string): TranslateRequest {
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch (e) {
    throw new UsageError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  if (j === null || typeof j !== "object" || Array.isArray(j))
    throw new UsageError(`${where}: must be a JSON object`);
  const o = j as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!KEYS.has(k)) throw new UsageError(`${where}: unknown field ${JSON.stringify(k)}`);
  const sidRaw = o.sid ?? o.rid;
  if (sidRaw === undefined) throw new UsageError(`${where}: sid is required`);
  const sid = intField(sidRaw, "sid", where);
  const pasid = o.pasid === undefined || o.pasid === null ? null : intField(o.pasid, "pasid", where);
  if (pasid !== null && pasid >= 2 ** 20)
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
  return { sid, pasid, iova, access, priv, echo: o };
}

/** Parses a JSONL request text (blank lines skipped). */
export function parseRequests(text: string, source: string): TranslateRequest[] {
  const out: TranslateRequest[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    out.push(parseRequest(line, `${source} line ${i + 1}`));
  });
  return out;
}

/** A fault as `translate` prints it. */
export interface FaultOut {
  readonly class: string;
  readonly name: string;
  readonly code: number | null;
  readonly recorded: boolean;
}

/** The fault's summary for output lines. */
export function faultOut(f: Fault): FaultOut {
  return { class: f.class, name: f.vendor.name, code: f.vendor.code, recorded: f.recorded };
}

/** The output of one request: the request echoed plus `pa`/`perm` or `fault`. */
export function translateOne(backend: Backend, r: TranslateRequest): Record<string, unknown> {
  const flags = accessFlags(r.access, r.priv);
  const pasid = r.pasid ?? NO_PASID;
  if (r.iova <= BigInt(Number.MAX_SAFE_INTEGER)) {
    const out = createTranslation();
    const ok = backend.translate(r.sid, pasid, Number(r.iova), flags, out);
    if (ok) return { ...r.echo, pa: `0x${out.pa.toString(16)}`, perm: permString(out.perm) };
    return { ...r.echo, fault: faultOut(out.fault!) };
  }
  if (backend.translateBig === undefined) {
    return { ...r.echo, error: `iova above 2^53 is not supported by ${backend.kind}` };
  }
  const o = backend.translateBig(r.sid, pasid, r.iova, flags);
  if (o.ok) return { ...r.echo, pa: `0x${o.pa.toString(16)}`, perm: permString(o.perm) };
  return { ...r.echo, fault: faultOut(o.fault) };
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

/**
 * The `expect` matcher of scenario steps. Rules (the host issue, "run"):
 * - named fields must match, fields the expectation does not name are ignored;
 * - arrays match element by element and must have the same length;
 * - numbers match by value whether written as numbers, bigints or hex strings;
 * - hex data (fields `data`, `bitmap`) matches case-insensitively, 0x and spaces ignored;
 * - `fault: X` matches a fault by vendor name ("F_TRANSLATION"), vendor code (16),
 *   generic class ("translation") or `true` (any fault); an object matches the fault's fields;
 * - `error: "EBUSY"` matches an error by errno name; `error: true` any error.
 * The result of a step is `{ result }`, `{ fault }` or `{ error }` ({@link Outcome}).
 */

import { bytesToHex, isNumberLike, toBig } from "./values.ts";

/** A fault as results and reports carry it. */
export interface FaultJson {
  readonly class: string;
  readonly name: string;
  readonly code: number | null;
  readonly recorded: boolean;
  readonly vendor: string;
  readonly [field: string]: unknown;
}

/** What one step produced. */
export type Outcome =
  | { readonly kind: "result"; readonly result: Readonly<Record<string, unknown>> }
  | { readonly kind: "fault"; readonly fault: FaultJson; readonly result: Readonly<Record<string, unknown>> }
  | { readonly kind: "error"; readonly error: { readonly code: string; readonly message: string } };

const HEX_DATA_KEYS = new Set(["data", "bitmap"]);

function normHex(s: string): string {
  return s.replace(/[\s_]/g, "").replace(/^0x/i, "").toLowerCase();
}

/** Matches `actual` against `expected`; returns the mismatches as "path: expected X, got Y" lines. */
export function matchValue(expected: unknown, actual: unknown, path = "", key = ""): string[] {
  const at = path === "" ? "result" : path;
  if (HEX_DATA_KEYS.has(key) && typeof expected === "string") {
    const a = actual instanceof Uint8Array ? bytesToHex(actual) : actual;
    if (typeof a === "string" && normHex(a) === normHex(expected)) return [];
    return [`${at}: expected ${JSON.stringify(expected)}, got ${show(actual)}`];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${at}: expected an array, got ${show(actual)}`];
    if (actual.length !== expected.length) {
      return [`${at}: expected ${expected.length} elements, got ${actual.length}: ${show(actual)}`];
    }
    return expected.flatMap((e, i) => matchValue(e, actual[i], `${at}[${i}]`, key));
  }
  if (expected !== null && typeof expected === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) {
      return [`${at}: expected an object, got ${show(actual)}`];
    }
    const rec = actual as Record<string, unknown>;
    return Object.entries(expected).flatMap(([k, e]) =>
      matchValue(e, rec[k], path === "" ? k : `${path}.${k}`, k),
    );
  }
  if (isNumberLike(expected)) {
    if (isNumberLike(actual) && toBig(expected) === toBig(actual)) return [];
    if (
      typeof expected === "string" &&
      typeof actual === "string" &&
      expected.toLowerCase() === actual.toLowerCase()
    )
      return [];
    return [`${at}: expected ${show(expected)}, got ${show(actual)}`];
  }
  if (typeof expected === "string" && typeof actual === "string") {
    return expected === actual
      ? []
      : [`${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`];
  }
  return Object.is(expected, actual) ? [] : [`${at}: expected ${show(expected)}, got ${show(actual)}`];
}

/** True when a fault matches `x` (vendor name, vendor code, class, true, or a partial object). */
export function faultMatches(x: unknown, fault: FaultJson): boolean {
  if (x === true) return true;
  if (x === false) return false;
  if (typeof x === "string" && !isNumberLike(x)) return x === fault.name || x === fault.class;
  if (isNumberLike(x)) return fault.code !== null && toBig(x) === BigInt(fault.code);
  if (x !== null && typeof x === "object") return matchValue(x, fault, "fault").length === 0;
  return false;
}

/**
 * Checks a step's outcome against its expectation. Without an expectation, a result
 * or a fault passes (a fault is only reported) and an error fails.
 */
export function checkExpect(
  expect: Readonly<Record<string, unknown>> | undefined,
  outcome: Outcome,
): string[] {
  if (expect === undefined) {
    return outcome.kind === "error" ? [`unexpected error ${outcome.error.message}`] : [];
  }
  const { fault: fx, error: ex, ...fields } = expect;
  if (outcome.kind === "error") {
    if (ex === undefined || ex === false) return [`expected success, got error ${outcome.error.message}`];
    if (ex === true || ex === outcome.error.code) return [];
    return [`error: expected ${String(ex)}, got ${outcome.error.code} (${outcome.error.message})`];
  }
  if (ex !== undefined && ex !== false) return [`error: expected ${String(ex)}, but the step succeeded`];
  const out: string[] = [];
  if (outcome.kind === "fault") {
    if (fx === undefined || fx === false) out.push(`expected no fault, got ${faultLine(outcome.fault)}`);
    else if (!faultMatches(fx, outcome.fault))
      out.push(`fault: expected ${show(fx)}, got ${faultLine(outcome.fault)}`);
  } else if (fx !== undefined && fx !== false) {
    out.push(`fault: expected ${show(fx)}, but the step did not fault`);
  }
  out.push(...matchValue(fields, outcome.result));
  return out;
}

/** One-line description of a fault: `F_TRANSLATION (0x10, translation)`. */
export function faultLine(f: FaultJson): string {
  const code = f.code === null ? "no code" : `0x${f.code.toString(16)}`;
  return `${f.name} (${code}, ${f.class}${f.recorded ? "" : ", not recorded"})`;
}

function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v instanceof Uint8Array) return JSON.stringify(bytesToHex(v));
  return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `0x${x.toString(16)}` : x));
}

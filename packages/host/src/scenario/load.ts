/**
 * Scenario files: parse (JSON, or YAML), validate against the schema (ajv), then check
 * what a schema cannot: names are unique and every reference names something declared
 * before. Every problem is a {@link ScenarioError} whose message points at the field
 * (`/steps/3/length`), which the CLI turns into exit status 2.
 */

import type { ErrorObject, ValidateFunction } from "ajv";
import { Ajv } from "ajv";
import { parse as parseYaml } from "yaml";
import type { JsonSchema } from "./schema.ts";
import { OP_ARGS, scenarioSchema } from "./schema.ts";
import { isNumberLike, toBig } from "./values.ts";

/** Deepest nesting of objects and arrays a scenario may have (real ones stay below 10). */
export const MAX_DEPTH = 64;
/** Most bytes a step may return (mem.read, a DMA or access read): 16 MiB. */
export const MAX_DATA: number = 2 ** 24;
/** Most pages a dirty bitmap (dirty.read) or pin list (access.pin) may cover: 2^27. */
export const MAX_PAGES: number = 2 ** 27;
const PAGE = 4096;

/** A physical memory region of a scenario. */
export interface RegionDecl {
  readonly base: number | string;
  readonly size: number | string;
  readonly name?: string;
}
/** An IOMMU instance of a scenario. */
export interface IommuDecl {
  readonly name: string;
  readonly backend: string;
  readonly config?: Readonly<Record<string, unknown>>;
}
/** A device behind an IOMMU, or a mediated device on a parent device. */
export type DeviceDecl =
  | {
      readonly name: string;
      readonly iommu: string;
      readonly rid: number | string;
      readonly pasidBits?: number;
      readonly ats?: boolean;
      /** PCIe PRI: the device sends page requests (needs ats). */
      readonly pri?: boolean;
      /** The device tolerates stalls (SMMUv3 stall model). */
      readonly canStall?: boolean;
    }
  | { readonly name: string; readonly parent: string; readonly iommu?: string };
/** One step: an op, its arguments, an optional name (`as`) and expectation. */
export interface StepDecl {
  readonly op: string;
  readonly as?: string;
  readonly name?: string;
  readonly expect?: Readonly<Record<string, unknown>>;
  readonly [arg: string]: unknown;
}
/** A validated scenario file. */
export interface Scenario {
  readonly name?: string;
  readonly description?: string;
  readonly plugins?: readonly string[];
  readonly memory?: { readonly ram?: readonly RegionDecl[]; readonly tables?: RegionDecl };
  readonly iommus?: readonly IommuDecl[];
  readonly devices?: readonly DeviceDecl[];
  readonly steps: readonly StepDecl[];
}

/** An invalid scenario: `pointer` is the JSON pointer of the offending field. */
export class ScenarioError extends Error {
  readonly file: string;
  readonly pointer: string;
  constructor(file: string, pointer: string, message: string) {
    super(`${file}: ${pointer === "" ? "/" : pointer}: ${message}`);
    this.name = "ScenarioError";
    this.file = file;
    this.pointer = pointer;
  }
}

const validators = new Map<string, ValidateFunction>();

/** The compiled validator for a schema (cached by its JSON text). */
export function compileSchema(schema: JsonSchema): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (v === undefined) {
    const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
    v = ajv.compile(schema as Record<string, unknown>);
    validators.set(key, v);
  }
  return v;
}

/**
 * The line and column where flow nesting (`[`, `{`, outside strings) first exceeds
 * `limit`, or null: checked before parsing, so no parser or validator recurses that deep.
 */
export function tooDeep(text: string, limit: number = MAX_DEPTH): { line: number; column: number } | null {
  let depth = 0;
  let quote = "";
  let line = 1;
  let col = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    col++;
    if (c === "\n") {
      line++;
      col = 0;
      if (quote === "'") quote = "";
      continue;
    }
    if (quote !== "") {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === "[" || c === "{") {
      if (++depth > limit) return { line, column: col };
    } else if ((c === "]" || c === "}") && depth > 0) depth--;
  }
  return null;
}

/** The pointer of the first value nested deeper than `limit` (iterative), or null. */
function deepPointer(doc: unknown, limit: number): string | null {
  const stack: [unknown, string, number][] = [[doc, "", 0]];
  while (stack.length > 0) {
    const [v, at, d] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (d >= limit) return at;
    for (const [k, x] of Object.entries(v)) stack.push([x, `${at}/${k}`, d + 1]);
  }
  return null;
}

/** Parses scenario text: JSON when `file` ends in .json (or the text starts with "{"), YAML otherwise. */
export function parseScenarioText(text: string, file: string): unknown {
  const json = /\.json$/i.test(file) || (!/\.ya?ml$/i.test(file) && text.trimStart().startsWith("{"));
  const deep = tooDeep(text);
  if (deep !== null)
    throw new ScenarioError(
      file,
      "",
      `line ${deep.line} column ${deep.column}: nested deeper than ${MAX_DEPTH} levels`,
    );
  let doc: unknown;
  if (json) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new ScenarioError(file, "", `not valid JSON: ${(e as Error).message}`);
    }
  } else {
    try {
      doc = parseYaml(text, { intAsBigInt: true, maxAliasCount: 100 });
    } catch (e) {
      const m = e instanceof RangeError ? `nested deeper than ${MAX_DEPTH} levels` : (e as Error).message;
      throw new ScenarioError(file, "", `not valid YAML: ${m.split("\n")[0]}`);
    }
  }
  // Block-style YAML nests by indentation, which the bracket scan does not see.
  const at = deepPointer(doc, MAX_DEPTH);
  if (at !== null) throw new ScenarioError(file, at, `nested deeper than ${MAX_DEPTH} levels`);
  return json ? doc : bigToSafe(doc);
}

/** YAML integers arrive as bigints: safe ones become numbers, larger ones hex strings (exact either way). */
function bigToSafe(v: unknown): unknown {
  if (typeof v === "bigint")
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n ? Number(v) : `0x${v.toString(16)}`;
  if (Array.isArray(v)) return v.map(bigToSafe);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, bigToSafe(x)]));
  }
  return v;
}

/** The pointer of the first JSON number that lost precision (an integer at or above 2^53), or null. */
function unsafeNumber(v: unknown, at: string): string | null {
  if (typeof v === "number") return Number.isInteger(v) && !Number.isSafeInteger(v) ? at : null;
  if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      const p = unsafeNumber(x, `${at}/${k}`);
      if (p !== null) return p;
    }
  }
  return null;
}

/** The most useful ajv error: the deepest, skipping if/anyOf summaries. */
export function describeAjvErrors(errors: readonly ErrorObject[]): { pointer: string; message: string } {
  const useful = errors.filter((e) => e.keyword !== "if" && e.keyword !== "anyOf" && e.keyword !== "oneOf");
  const pool = useful.length > 0 ? useful : errors;
  let best = pool[0]!;
  for (const e of pool) if (e.instancePath.split("/").length > best.instancePath.split("/").length) best = e;
  let message = best.message ?? "is invalid";
  const p = best.params as Record<string, unknown>;
  let pointer = best.instancePath;
  if (best.keyword === "additionalProperties") {
    pointer = `${pointer}/${String(p.additionalProperty)}`;
    message = "is not a known field here";
  } else if (best.keyword === "required") {
    pointer = `${pointer}/${String(p.missingProperty)}`;
    message = "is required";
  } else if (best.keyword === "enum") {
    message = `must be one of ${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(", ")}`;
  } else if (best.schemaPath.includes("/$defs/number/")) {
    message = "must be a non-negative integer or a 0x hex string";
  } else if (best.schemaPath.includes("/$defs/hex/")) {
    message = "must be hex text (pairs of hex digits, optional 0x)";
  } else if (best.schemaPath.includes("/$defs/name/")) {
    message = "must be a name (a letter or _, then letters, digits, _ . : -)";
  } else if (best.schemaPath.includes("/$defs/target/")) {
    message = 'must be "rid", "rid-all-pasids", "emulated", {"pasid": N} or {"pasid": "auto"}';
  } else {
    const anyOfHere = errors.some((e) => e.keyword === "anyOf" && e.instancePath === best.instancePath);
    if (anyOfHere) message = `${message} (or another form the schema allows)`;
  }
  return { pointer, message };
}

/** Validates `doc` against the scenario schema, then checks names and references. */
export function validateScenario(
  doc: unknown,
  file: string,
  backendSchemas: Readonly<Record<string, JsonSchema | undefined>> = {},
): Scenario {
  const lossy = unsafeNumber(doc, "");
  if (lossy !== null)
    throw new ScenarioError(
      file,
      lossy,
      "is at or above 2^53 and lost precision: write it as a 0x hex string",
    );
  const validate = compileSchema(scenarioSchema(backendSchemas));
  if (!validate(doc)) {
    const { pointer, message } = describeAjvErrors(validate.errors ?? []);
    throw new ScenarioError(file, pointer, message);
  }
  const s = doc as Scenario;
  checkNames(s, file);
  checkBounds(s, file);
  return s;
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The value of a number field, which must be below 2^53 (the host takes numbers). */
function safe(v: unknown, file: string, at: string): number | undefined {
  if (v === undefined || !isNumberLike(v)) return undefined;
  const b = toBig(v);
  if (b > SAFE)
    throw new ScenarioError(
      file,
      at,
      `${typeof v === "string" ? v : String(v)} is at or above 2^53 (out of range)`,
    );
  return Number(b);
}

function limit(file: string, at: string, n: number, max: number, what: string): void {
  if (n > max)
    throw new ScenarioError(
      file,
      at,
      `E2BIG: 0x${n.toString(16)} is over the limit 0x${max.toString(16)} (${what})`,
    );
}

/**
 * What the host would refuse late or could not allocate: numbers at or above 2^53,
 * misaligned RAM, a rid wider than 32 bits, and step lengths that allocate (bounded
 * before anything is allocated).
 */
function checkBounds(s: Scenario, file: string): void {
  const regions: [RegionDecl, string][] = (s.memory?.ram ?? []).map((r, i) => [r, `/memory/ram/${i}`]);
  if (s.memory?.tables !== undefined) regions.push([s.memory.tables, "/memory/tables"]);
  for (const [r, at] of regions) {
    for (const k of ["base", "size"] as const) {
      const v = safe(r[k], file, `${at}/${k}`);
      if (v !== undefined && v % PAGE !== 0)
        throw new ScenarioError(file, `${at}/${k}`, `0x${v.toString(16)} is not 4 KiB aligned`);
    }
  }
  (s.devices ?? []).forEach((d, i) => {
    if (!("rid" in d)) return;
    const rid = safe(d.rid, file, `/devices/${i}/rid`);
    if (rid !== undefined && rid >= 2 ** 32)
      throw new ScenarioError(file, `/devices/${i}/rid`, `0x${rid.toString(16)} is wider than 32 bits`);
  });
  s.steps.forEach((st, i) => {
    const at = `/steps/${i}`;
    const props = OP_ARGS[st.op]?.properties ?? {};
    for (const [k, sch] of Object.entries(props))
      if ((sch as { $ref?: string }).$ref === "#/$defs/number") safe(st[k], file, `${at}/${k}`);
    if (st.op === "dma") safe(st.pasid, file, `${at}/pasid`);
    const len = safe(st.length, file, `${at}/length`);
    if (len === undefined) return;
    const reads =
      st.op === "mem.read" ||
      (st.op === "dma" && (st.access ?? "read") !== "write") ||
      (st.op === "access.rw" && st.write !== true);
    if (reads) limit(file, `${at}/length`, len, MAX_DATA, "bytes a step may return");
    if (st.op === "dirty.read") {
      const ps = safe(st.pageSize, file, `${at}/pageSize`) ?? PAGE;
      if (ps > 0) limit(file, `${at}/length`, Math.ceil(len / ps), MAX_PAGES, "pages of a dirty bitmap");
    }
    if (st.op === "access.pin") limit(file, `${at}/length`, Math.ceil(len / PAGE), MAX_PAGES, "pages pinned");
  });
}

/** Parses and validates scenario text. */
export function loadScenario(
  text: string,
  file: string,
  backendSchemas: Readonly<Record<string, JsonSchema | undefined>> = {},
): Scenario {
  return validateScenario(parseScenarioText(text, file), file, backendSchemas);
}

/** Step fields that name an earlier object (`as`) and those that name a device. */
const OBJECT_REFS = [
  "ioas",
  "src",
  "dst",
  "pt",
  "hwpt",
  "id",
  "viommu",
  "veventq",
  "fault",
  "faultQueue",
] as const;

function checkNames(s: Scenario, file: string): void {
  const iommus = new Set<string>();
  (s.iommus ?? []).forEach((m, i) => {
    if (iommus.has(m.name))
      throw new ScenarioError(file, `/iommus/${i}/name`, `duplicate IOMMU name ${m.name}`);
    iommus.add(m.name);
  });
  const devices = new Set<string>();
  (s.devices ?? []).forEach((d, i) => {
    if (devices.has(d.name))
      throw new ScenarioError(file, `/devices/${i}/name`, `duplicate device name ${d.name}`);
    if ("parent" in d) {
      if (!devices.has(d.parent)) {
        throw new ScenarioError(
          file,
          `/devices/${i}/parent`,
          `no device named ${d.parent} declared before it`,
        );
      }
      if (d.iommu !== undefined && !iommus.has(d.iommu)) {
        throw new ScenarioError(file, `/devices/${i}/iommu`, `no IOMMU named ${d.iommu}`);
      }
    } else if (!iommus.has(d.iommu)) {
      throw new ScenarioError(file, `/devices/${i}/iommu`, `no IOMMU named ${d.iommu}`);
    }
    devices.add(d.name);
  });
  const objects = new Set<string>();
  s.steps.forEach((st, i) => {
    if (typeof st.device === "string" && !devices.has(st.device)) {
      throw new ScenarioError(file, `/steps/${i}/device`, `no device named ${st.device}`);
    }
    for (const k of OBJECT_REFS) {
      const v = st[k];
      if (typeof v === "string" && !objects.has(v)) {
        throw new ScenarioError(
          file,
          `/steps/${i}/${k}`,
          `no object named ${v} (name it with "as" in an earlier step)`,
        );
      }
    }
    if (st.as !== undefined) {
      if (devices.has(st.as))
        throw new ScenarioError(file, `/steps/${i}/as`, `${st.as} already names a device`);
      objects.add(st.as);
    }
    if (st.op === "ioas.unmap" && st.all !== true && (st.iova === undefined || st.length === undefined)) {
      throw new ScenarioError(
        file,
        `/steps/${i}/${st.iova === undefined ? "iova" : "length"}`,
        "is required unless all: true",
      );
    }
    if (st.op === "dma" && (st.access ?? "read") === "write" && st.data === undefined) {
      throw new ScenarioError(file, `/steps/${i}/data`, "is required for a write");
    }
    if (
      st.op === "dma" &&
      (st.access ?? "read") !== "write" &&
      st.data !== undefined &&
      st.length !== undefined
    ) {
      throw new ScenarioError(file, `/steps/${i}/data`, "is only for writes");
    }
    if (st.op === "access.rw" && st.write === true && st.data === undefined) {
      throw new ScenarioError(file, `/steps/${i}/data`, "is required for a write");
    }
    if (st.op === "access.rw" && st.write !== true && st.length === undefined) {
      throw new ScenarioError(file, `/steps/${i}/length`, "is required for a read");
    }
  });
}

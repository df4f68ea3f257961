/**
 * Reading the CLI's input: files (bounded in size), JSON (bounded in depth before it is
 * parsed), numbers of options, plugins, scenario files, and the scenario host, whose
 * setup errors (a backend refusing a rid, a RAM map, a config) are placed at the
 * scenario field that caused them. Every failure is a one-line UsageError or
 * ScenarioError naming its place: exit 2.
 */

import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME } from "../scenario/default-scenario.ts";
import type { ScenarioHost } from "../scenario/host.ts";
import { createScenarioHost } from "../scenario/host.ts";
import type { Scenario } from "../scenario/load.ts";
import { MAX_DEPTH, parseScenarioText, ScenarioError, tooDeep, validateScenario } from "../scenario/load.ts";
import { findFactory, loadPlugin, thrownText } from "./backends.ts";
import { UsageError } from "./errors.ts";

/** Largest text file read (scenarios, requests, registers): 256 MiB. */
export const MAX_TEXT: number = 2 ** 28;

/** A text file (or stdin for "-"), bounded in size. */
export function readText(file: string, what: string): string {
  try {
    if (file !== "-" && statSync(file).size > MAX_TEXT)
      throw new UsageError(`${what} ${file}: E2BIG: larger than ${MAX_TEXT} bytes`);
    return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(
      `cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? thrownText(e)}`,
    );
  }
}

/** JSON text, nesting checked before parsing. */
export function parseJson(text: string, where: string): unknown {
  const deep = tooDeep(text);
  if (deep !== null)
    throw new UsageError(
      `${where}: line ${deep.line} column ${deep.column}: nested deeper than ${MAX_DEPTH} levels`,
    );
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${where}: not valid JSON (${thrownText(e)})`);
  }
}

/** A number option: 0x hex or decimal, below `limit`. */
export function parseNum(v: string, what: string, limit: bigint = 1n << 64n): bigint {
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(v))
    throw new UsageError(`${what} ${JSON.stringify(v)} is not hex (0x...) or decimal`);
  const n = BigInt(v);
  if (n >= limit) throw new UsageError(`${what} ${v}: must be below 0x${limit.toString(16)}`);
  return n;
}

/** Loads the `--plugin` modules. */
export async function loadPlugins(plugins: readonly string[], base: string): Promise<void> {
  for (const p of plugins) await loadPlugin(p, base);
}

/** Loads and validates one scenario file (or the default one), with its plugins registered. */
export async function scenarioFrom(
  file: string | undefined,
): Promise<{ scenario: Scenario; file: string; baseDir: string }> {
  if (file === undefined) {
    return {
      scenario: validateScenario(DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME),
      file: DEFAULT_SCENARIO_NAME,
      baseDir: process.cwd(),
    };
  }
  const text = readText(file, "scenario");
  // One parse, one schema validation (compiling the schema is most of a run's start-up):
  // plugins and backends are found from the raw document first, so each backend's
  // configSchema joins the one validation. Malformed parts are left to the schema.
  const doc = parseScenarioText(text, file) as { plugins?: unknown; iommus?: unknown } | null;
  const baseDir = resolve(file, "..");
  const plugins = doc !== null && typeof doc === "object" && Array.isArray(doc.plugins) ? doc.plugins : [];
  for (const [i, p] of plugins.entries()) {
    if (typeof p !== "string") continue;
    try {
      await loadPlugin(p, baseDir);
    } catch (e) {
      throw new ScenarioError(file, `/plugins/${i}`, thrownText(e));
    }
  }
  const schemas: Record<string, Readonly<Record<string, unknown>> | undefined> = {};
  const iommus = doc !== null && typeof doc === "object" && Array.isArray(doc.iommus) ? doc.iommus : [];
  for (const [i, m] of iommus.entries()) {
    const backend = (m as { backend?: unknown } | null)?.backend;
    if (typeof backend !== "string") continue;
    try {
      schemas[backend] = (await findFactory(backend)).configSchema;
    } catch (e) {
      throw new ScenarioError(file, `/iommus/${i}/backend`, thrownText(e));
    }
  }
  return { scenario: validateScenario(doc, file, schemas), file, baseDir };
}

/** The field of a device a backend's refusal is about. */
function deviceField(message: string): string {
  if (/pasid/i.test(message)) return "/pasidBits";
  if (/\brid\b|source-id|stream ?id|requester/i.test(message)) return "/rid";
  return "";
}

/**
 * Where a scenario's setup fails: rebuilt piece by piece (memory, plugins, each IOMMU,
 * each device) until the failing piece is found. Only run after a failure.
 */
async function placeSetupError(
  s: Scenario,
  file: string,
  baseDir: string,
  err: unknown,
): Promise<ScenarioError> {
  const msg = thrownText(err);
  const mem = s.memory ? { memory: s.memory } : {};
  const tries: [Scenario, string, string][] = [
    [{ ...mem, steps: [] }, "/memory", ""],
    [{ ...mem, ...(s.plugins ? { plugins: s.plugins } : {}), steps: [] }, "/plugins", ""],
  ];

  const iommus = s.iommus ?? [];
  for (let i = 0; i < iommus.length; i++) {
    const at = `/iommus/${i}${/config/i.test(msg) ? "/config" : ""}`;
    tries.push([
      { ...s, iommus: iommus.slice(0, i + 1), devices: [], steps: [] },
      at,
      `backend ${iommus[i]!.backend}: `,
    ]);
  }
  const devices = s.devices ?? [];
  for (let i = 0; i < devices.length; i++)
    tries.push([
      { ...s, devices: devices.slice(0, i + 1), steps: [] },
      `/devices/${i}${deviceField(msg)}`,
      "",
    ]);
  for (const [partial, at, who] of tries) {
    try {
      await createScenarioHost(partial, { baseDir });
    } catch (e) {
      return new ScenarioError(file, at, who + thrownText(e));
    }
  }
  return new ScenarioError(file, "", msg);
}

/** The host of a scenario; a setup failure is bad input at its field. */
export async function hostFor(s: Scenario, file: string, baseDir: string): Promise<ScenarioHost> {
  try {
    return await createScenarioHost(s, { baseDir });
  } catch (e) {
    throw await placeSetupError(s, file, baseDir, e);
  }
}

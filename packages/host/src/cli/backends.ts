/**
 * Backend lookup for the CLI through the host's loader (`../registry.ts`): a name in
 * core's default registry, else the package `@iommu-kit/<name>`; plugins by path or
 * package. Failures become one-line usage errors (exit 2) that say what went wrong and
 * how to fix it: the file is not there, it does not parse, it is TypeScript without a
 * loader, a module it imports is missing, it threw while loading, or it exports no
 * backend factory.
 */

import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { BackendFactory } from "@iommu-kit/core";
import { defaultRegistry } from "@iommu-kit/core";
import { isModulePath, loadBackend, registerExports } from "../registry.ts";
import { UsageError } from "./errors.ts";

/** The message of anything thrown (`throw null`, a string, an Error). */
export function thrownText(e: unknown): string {
  if (e instanceof Error) return e.message.split("\n")[0] ?? e.name;
  if (e === null || e === undefined) return `threw ${String(e)}`;
  if (typeof e === "object") {
    const m = (e as { message?: unknown }).message;
    if (typeof m === "string") return m;
  }
  return `threw ${typeof e === "string" ? JSON.stringify(e) : String(e)}`;
}

function code(e: unknown): string | undefined {
  return e !== null && typeof e === "object"
    ? ((e as { code?: unknown }).code as string | undefined)
    : undefined;
}

/** Why importing `spec` (at `url` when a path) failed, with the fix. */
function importFailure(spec: string, file: string | null, e: unknown): string {
  const c = code(e);
  if (
    file !== null &&
    /\.[cm]?ts$/.test(file) &&
    (c === "ERR_UNKNOWN_FILE_EXTENSION" || e instanceof SyntaxError)
  )
    return `${file} is TypeScript, which node cannot import without a loader: build it to JavaScript, or run node with a TypeScript loader (node --import tsx $(which iommu-kit) ...)`;
  if (e instanceof SyntaxError) return `syntax error in ${file ?? spec}: ${e.message.split("\n")[0]}`;
  if (c === "ERR_MODULE_NOT_FOUND" || c === "MODULE_NOT_FOUND") {
    const missing = /Cannot find (?:module|package) '([^']+)'/.exec(thrownText(e))?.[1];
    if (file === null && (missing === spec || missing === undefined))
      return `no package ${spec} is installed (install it, or give a path: ./plugin.js)`;
    return `a module it imports is missing: ${missing ?? thrownText(e)}`;
  }
  return `it threw while loading: ${thrownText(e)}`;
}

/** Loads a plugin (a module path resolved against `baseDir`, or a package name) and registers its factories. */
export async function loadPlugin(spec: string, baseDir: string): Promise<string[]> {
  let file: string | null = null;
  let target = spec;
  if (isModulePath(spec)) {
    file = spec.startsWith("file:") ? fileURLToPath(spec) : isAbsolute(spec) ? spec : resolve(baseDir, spec);
    if (!existsSync(file)) throw new UsageError(`cannot load plugin ${spec}: ENOENT: no file ${file}`);
    target = pathToFileURL(file).href;
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(target)) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`cannot load plugin ${spec}: ${importFailure(spec, file, e)}`);
  }
  const names = registerExports(mod, defaultRegistry);
  if (names.length === 0) {
    const exported = Object.keys(mod).join(", ") || "nothing";
    throw new UsageError(
      `cannot load plugin ${spec}: EINVAL: it exports no backend factory (an object with a string name and a create function; it exports: ${exported})`,
    );
  }
  return names;
}

/** Names of the backends this package ships with (its `@iommu-kit/*` dependencies but core). */
export function builtinNames(): string[] {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    return Object.keys(pkg.dependencies ?? {})
      .map((d) => /^@iommu-kit\/([a-z][a-z0-9-]*)$/.exec(d)?.[1])
      .filter((n): n is string => n !== undefined && n !== "core");
  } catch {
    return [];
  }
}

/** The built-in factories (imported on demand): the host names no vendor in its code. */
export async function builtinFactories(): Promise<BackendFactory[]> {
  const out: BackendFactory[] = [];
  for (const n of builtinNames()) {
    try {
      out.push(await loadBackend(n, defaultRegistry));
    } catch {
      // A dependency without a backend factory of that name.
    }
  }
  return out;
}

/** The factory named `name` (registered, or from `@iommu-kit/<name>`). */
export async function findFactory(name: string): Promise<BackendFactory> {
  try {
    return await loadBackend(name, defaultRegistry);
  } catch (e) {
    const known = [...new Set([...builtinNames(), ...defaultRegistry.names()])].sort().join(", ");
    throw new UsageError(
      `unknown backend ${JSON.stringify(name)} (${thrownText(e)}; available: ${known || "none"}; load others with --plugin)`,
    );
  }
}

/**
 * Backend lookup for the CLI through the host's loader (`../registry.ts`): a name in
 * core's default registry, else the package `@iommu-kit/<name>`; plugins by path or
 * package. Failures become one-line usage errors (exit 2).
 */

import type { BackendFactory } from "@iommu-kit/core";
import { defaultRegistry } from "@iommu-kit/core";
import { loadPlugin as hostLoadPlugin, isModulePath, loadBackend, registerExports } from "../registry.ts";
import { UsageError } from "./errors.ts";

/** Loads a plugin (a module path resolved against `baseDir`, or a package name) and registers its factories. */
export async function loadPlugin(spec: string, baseDir: string): Promise<string[]> {
  try {
    if (isModulePath(spec)) return await hostLoadPlugin(spec, defaultRegistry, baseDir);
    const mod = (await import(spec)) as Record<string, unknown>;
    const names = registerExports(mod, defaultRegistry);
    if (names.length === 0) throw new Error(`plugin ${spec} exports no backend factory`);
    return names;
  } catch (e) {
    throw new UsageError(`cannot load plugin ${spec}: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** The factory named `name` (registered, or from `@iommu-kit/<name>`). */
export async function findFactory(name: string): Promise<BackendFactory> {
  try {
    return await loadBackend(name, defaultRegistry);
  } catch (e) {
    const known = defaultRegistry.names().join(", ") || "none";
    throw new UsageError(
      `${(e as Error).message.split("\n")[0]} (registered: ${known}; load others with --plugin)`,
    );
  }
}

/**
 * The backend loader: the host never names a vendor in its code. A backend is looked
 * up by name in a {@link BackendRegistry} (core's `defaultRegistry` unless told
 * otherwise); a name that is not registered is imported as the package
 * `@iommu-kit/<name>`, and a module path (a plugin: "./x.js", "/abs/x.js",
 * "file:...") is imported as is. Every export of the module that is a
 * BackendFactory (an object with a string `name` and a `create` function) is
 * registered. Scenario `plugins` and the CLI's `--plugin` go through here too.
 */

import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { BackendFactory, BackendRegistry } from "@iommu-kit/core";
import { defaultRegistry, IommuError } from "@iommu-kit/core";

/** True when `v` looks like a BackendFactory. */
export function isBackendFactory(v: unknown): v is BackendFactory {
  if (typeof v !== "object" || v === null) return false;
  const f = v as Partial<BackendFactory>;
  return typeof f.name === "string" && typeof f.create === "function";
}

/** True when `spec` names a module path rather than a backend name. */
export function isModulePath(spec: string): boolean {
  return (
    spec.startsWith(".") ||
    spec.startsWith("/") ||
    spec.startsWith("file:") ||
    isAbsolute(spec) ||
    /\.[cm]?[jt]s$/.test(spec)
  );
}

/** Registers every BackendFactory exported by `mod`; returns their names. */
export function registerExports(mod: Readonly<Record<string, unknown>>, registry: BackendRegistry): string[] {
  const names: string[] = [];
  for (const v of Object.values(mod)) {
    if (!isBackendFactory(v)) continue;
    registry.register(v);
    if (!names.includes(v.name)) names.push(v.name);
  }
  return names;
}

/**
 * Imports a plugin module (a path, resolved against `baseDir`, default the working
 * directory) and registers its factories. Returns their names; EINVAL when the module
 * exports none, ENOENT when it cannot be imported.
 */
export async function loadPlugin(
  path: string,
  registry: BackendRegistry = defaultRegistry,
  baseDir?: string,
): Promise<string[]> {
  const url = path.startsWith("file:") ? path : pathToFileURL(resolve(baseDir ?? process.cwd(), path)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw new IommuError(
      "ENOENT",
      `cannot import plugin ${path}: ${(e as Error).message}`,
      { path },
      { cause: e },
    );
  }
  const names = registerExports(mod, registry);
  if (names.length === 0)
    throw new IommuError("EINVAL", `plugin ${path} exports no backend factory`, { path });
  return names;
}

/**
 * The factory for a backend name or a module path. A registered name is returned at
 * once; an unknown name imports `@iommu-kit/<name>` and registers its factories; a
 * path loads the plugin and returns its first factory. ENOENT when nothing provides it.
 */
export async function loadBackend(
  spec: string,
  registry: BackendRegistry = defaultRegistry,
  baseDir?: string,
): Promise<BackendFactory> {
  if (isModulePath(spec)) {
    const names = await loadPlugin(spec, registry, baseDir);
    return registry.get(names[0]!);
  }
  if (registry.has(spec)) return registry.get(spec);
  if (!/^[a-z][a-z0-9-]*$/.test(spec))
    throw new IommuError("EINVAL", `bad backend name ${JSON.stringify(spec)}`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(`@iommu-kit/${spec}`)) as Record<string, unknown>;
  } catch (e) {
    throw new IommuError(
      "ENOENT",
      `no backend named ${spec} (and no package @iommu-kit/${spec})`,
      { name: spec },
      { cause: e },
    );
  }
  registerExports(mod, registry);
  return registry.get(spec);
}

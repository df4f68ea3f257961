/**
 * The backend registry: backends are found by name, so the host, scenario files and
 * the CLI never list vendors in their code. Built-in and third-party backends register
 * the same way: `registerBackend(factory)`.
 */

import type { BackendFactory } from "./backend.ts";
import { IommuError } from "./errors.ts";

/** A name -> factory table. One default instance is shared ({@link defaultRegistry}). */
export class BackendRegistry {
  readonly #factories = new Map<string, BackendFactory>();

  /**
   * Registers a factory under `factory.name`. Registering the same factory again is a
   * no-op; another factory under a taken name is EEXIST.
   */
  register(factory: BackendFactory): void {
    if (!/^[a-z][a-z0-9-]*$/.test(factory.name)) {
      throw new IommuError("EINVAL", `backend name ${JSON.stringify(factory.name)} is not kebab-case`);
    }
    const old = this.#factories.get(factory.name);
    if (old === factory) return;
    if (old !== undefined)
      throw new IommuError("EEXIST", `a backend named ${factory.name} is already registered`);
    this.#factories.set(factory.name, factory);
  }

  /** Removes a registration (tests, plugin reloads). */
  unregister(name: string): boolean {
    return this.#factories.delete(name);
  }

  /** The factory named `name`; ENOENT lists the registered names. */
  get(name: string): BackendFactory {
    const f = this.#factories.get(name);
    if (f === undefined) {
      throw new IommuError(
        "ENOENT",
        `no backend named ${JSON.stringify(name)} (registered: ${this.names().join(", ") || "none"})`,
        {
          name,
        },
      );
    }
    return f;
  }

  /** True when `name` is registered. */
  has(name: string): boolean {
    return this.#factories.has(name);
  }

  /** Registered names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }
}

/** The process-wide registry that `registerBackend` uses. */
export const defaultRegistry: BackendRegistry = new BackendRegistry();

/** Registers a backend factory in the default registry. */
export function registerBackend(factory: BackendFactory): void {
  defaultRegistry.register(factory);
}

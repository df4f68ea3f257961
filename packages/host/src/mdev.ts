/**
 * Adding a mediated device (the host side of an mdev: which mdev backend instance
 * serves it, and its RID on that instance). An mdev has no IOMMU of its own: its
 * backend is an instance of the host's mdev backend kind, created on first use, and
 * the built-in mdev-emulated is registered when the registry lacks it (the scenario
 * README lets an mdev name no IOMMU, and this sync path cannot import a plugin).
 * Atomic: on any error the instance and registration made here are undone.
 */

import type { Backend, BackendRegistry } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import { mdevEmulatedBackend } from "@iommu-kit/mdev-emulated";
import type { HostCtx } from "./context.ts";
import type { MdevOptions } from "./device.ts";
import { allDevices, bindMdev, getDevice } from "./device.ts";

/** What {@link addMdevDevice} needs of the host facade. */
export interface MdevHost {
  readonly ctx: HostCtx;
  readonly registry: BackendRegistry;
  /** IOMMU instances by name (the facade's own map). */
  readonly iommus: Map<string, Backend>;
  /** The backend kind that hosts mediated devices. */
  readonly mdevBackend: string;
  addIommu(name: string, backendName: string): Backend;
}

/** `Host.addMdev`: returns the new device's object id. */
export function addMdevDevice(h: MdevHost, opts: MdevOptions): number {
  const parent = getDevice(h.ctx, opts.parent);
  if (parent.parent !== null)
    throw new IommuError("EINVAL", `device ${parent.id} is itself an mdev`, { parent: parent.id });
  let name = opts.iommu;
  let created = false;
  let registered = false;
  if (name === undefined) {
    name = [...h.iommus.values()].find((b) => b.kind === h.mdevBackend)?.name;
    if (name === undefined) {
      if (h.mdevBackend === mdevEmulatedBackend.name && !h.registry.has(h.mdevBackend)) {
        h.registry.register(mdevEmulatedBackend);
        registered = true;
      }
      name = "mdev";
      for (let i = 1; h.iommus.has(name); i++) name = `mdev${i}`;
      try {
        h.addIommu(name, h.mdevBackend);
      } catch (e) {
        if (registered) h.registry.unregister(h.mdevBackend);
        throw e;
      }
      created = true;
    }
  }
  const backend = h.iommus.get(name);
  if (backend === undefined) throw new IommuError("ENOENT", `no IOMMU named ${name}`, { name });
  if (backend.kind !== h.mdevBackend) {
    throw new IommuError("EINVAL", `IOMMU ${name} (${backend.kind}) is not an mdev backend`, { name });
  }
  let rid = opts.rid;
  if (rid === undefined) {
    const used = new Set(
      allDevices(h.ctx)
        .filter((d) => d.backend === backend)
        .map((d) => d.rid),
    );
    rid = 0;
    while (used.has(rid)) rid++;
  }
  try {
    return bindMdev(h.ctx, parent, name, backend, rid);
  } catch (e) {
    if (created) h.iommus.delete(name);
    if (registered) h.registry.unregister(h.mdevBackend);
    throw e;
  }
}

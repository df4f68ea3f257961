/**
 * Builds the host a scenario runs on: memory (default RAM [0, 4 GiB), tables in
 * 256 MiB just above), the IOMMUs (backends loaded by name through the registry
 * loader, plugins first), the devices; and adapts the {@link Host} facade to the
 * runner's {@link HostAdapter} (scenario names <-> host ids).
 */

import type { Backend, CacheCounters, WalkStep } from "@iommu-kit/core";
import { IommuError } from "@iommu-kit/core";
import type { DmaResult } from "../host.ts";
import { Host } from "../host.ts";
import { isModulePath, loadPlugin, registerExports } from "../registry.ts";
import type { CapRow, HostAdapter, HostDmaResult, HostFault, ViommuRow } from "./host-adapter.ts";
import type { Scenario } from "./load.ts";
import { capRow } from "./runner.ts";
import { toNum } from "./values.ts";

/** A host adapter plus what `explain`, `dump` and `caps` need. */
export interface ScenarioHost extends HostAdapter {
  readonly host: Host;
  /** The vIOMMUs with their vDEVICEs and vEVENTQs, by scenario names (after steps ran). */
  viommuTable(): ViommuRow[];
  /** The IOMMU instance and rid of a scenario device. */
  backendOf(device: string): { backend: Backend; rid: number };
  /**
   * Where a device's DMA goes out: itself, or for an mdev attached by PASID, its parent
   * with that PASID (as the host routes it). `pasid` is the request's, if any.
   */
  routeOf(
    device: string,
    pasid: number | null,
  ): { backend: Backend; rid: number; pasid: number | null; via: string | null };
  /** The walk of one request from a scenario device (routed like its DMA). */
  explain(
    device: string,
    req: { pasid: number | null; iova: bigint; access: "read" | "write" | "exec"; priv: boolean },
  ): readonly WalkStep[];
  /** The decoded tables of a device, or of every IOMMU instance. */
  dump(device: string | undefined): unknown;
}

/** Options of {@link createScenarioHost}. */
export interface ScenarioHostOptions {
  /** Directory plugin paths are relative to (the scenario file's). */
  readonly baseDir?: string;
}

/** Loads a plugin: a module path (relative to `baseDir`) or a package specifier; registers its factories. */
export async function loadScenarioPlugin(host: Host, spec: string, baseDir?: string): Promise<string[]> {
  if (isModulePath(spec)) return loadPlugin(spec, host.registry, baseDir);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(spec)) as Record<string, unknown>;
  } catch (e) {
    throw new IommuError("ENOENT", `cannot import plugin ${spec}: ${(e as Error).message}`, { path: spec });
  }
  const names = registerExports(mod, host.registry);
  if (names.length === 0)
    throw new IommuError("EINVAL", `plugin ${spec} exports no backend factory`, { path: spec });
  return names;
}

/** Creates the host for a scenario and wraps it for the runner. */
export async function createScenarioHost(
  s: Scenario,
  options: ScenarioHostOptions = {},
): Promise<ScenarioHost> {
  const ram = s.memory?.ram?.map((r) => ({
    base: toNum(r.base),
    size: toNum(r.size),
    ...(r.name ? { name: r.name } : {}),
  }));
  const t = s.memory?.tables;
  const host = new Host({
    ...(ram !== undefined ? { ram } : {}),
    ...(t !== undefined ? { tables: { base: toNum(t.base), size: toNum(t.size) } } : {}),
  });
  for (const p of s.plugins ?? []) await loadScenarioPlugin(host, p, options.baseDir);
  for (const m of s.iommus ?? []) {
    await host.loadBackend(m.backend, options.baseDir);
    host.addIommu(m.name, m.backend, m.config);
  }
  const ids = new Map<string, number>();
  const names = new Map<number, string>();
  for (const d of s.devices ?? []) {
    const id =
      "parent" in d
        ? host.addMdev({ parent: ids.get(d.parent)!, ...(d.iommu !== undefined ? { iommu: d.iommu } : {}) })
        : host.addDevice({
            iommu: d.iommu,
            rid: toNum(d.rid),
            pasidBits: d.pasidBits ?? 0,
            ...(d.ats !== undefined ? { ats: d.ats } : {}),
            ...(d.pri !== undefined ? { pri: d.pri } : {}),
            ...(d.canStall !== undefined ? { canStall: d.canStall } : {}),
          });
    ids.set(d.name, id);
    names.set(id, d.name);
  }
  const devId = (name: string): number => {
    const id = ids.get(name);
    if (id === undefined) throw new IommuError("ENOENT", `no device named ${name}`);
    return id;
  };
  const fault = (f: HostFault): HostFault => {
    const dev = typeof f.device === "number" ? (names.get(f.device) ?? f.device) : f.device;
    return { ...f, device: dev };
  };
  const dmaOut = (r: DmaResult): HostDmaResult => {
    if (r.ok) return r.data !== undefined ? { ok: true, pa: r.pa, data: r.data } : { ok: true, pa: r.pa };
    const f = fault(r.fault as unknown as HostFault);
    return r.pending === true
      ? { ok: false, fault: f, pending: true, cookie: r.cookie }
      : { ok: false, fault: f };
  };
  const info = (name: string) => host.describe(devId(name)) as { iommu?: string; rid?: number };
  const objNames = new Map<number, string>();
  const objName = (id: number): string => names.get(id) ?? objNames.get(id) ?? String(id);
  const adapter: ScenarioHost = {
    host,
    deviceId: devId,
    nameObject(id, name) {
      objNames.set(id, name);
    },
    viommuTable(): ViommuRow[] {
      const all = host.objects();
      return all.flatMap((o) => {
        if (o.kind !== "viommu") return [];
        return [
          {
            viommu: objName(o.id),
            type: o.type,
            iommu: o.iommu,
            hwpt: objName(o.hwpt),
            vendor: o.vendor,
            vdevices: all.flatMap((d) =>
              d.kind === "vdevice" && d.viommu === o.id
                ? [{ vdevice: objName(d.id), device: objName(d.device), virtId: d.virtId }]
                : [],
            ),
            veventqs: all.flatMap((q) =>
              q.kind === "veventq" && q.viommu === o.id
                ? [{ veventq: objName(q.id), type: q.type, depth: q.depth, pending: q.pending }]
                : [],
            ),
          },
        ];
      });
    },
    capTable(): CapRow[] {
      return (s.devices ?? []).map((d) => {
        const id = devId(d.name);
        const hw = host.hwInfo(id);
        const o = info(d.name);
        const iommu = o.iommu ?? ("iommu" in d && d.iommu !== undefined ? d.iommu : "?");
        return capRow(
          d.name,
          iommu,
          host.iommu(iommu).kind,
          o.rid ?? ("rid" in d ? toNum(d.rid) : 0),
          hw.caps,
        );
      });
    },
    counters(): Record<string, CacheCounters> {
      return Object.fromEntries(host.iommus().map((m) => [m.name, host.counters(m.name)]));
    },
    ioasAlloc: () => host.ioasAlloc(),
    ioasMap: (ioas, a) =>
      host.ioasMap(ioas, {
        ...(a.iova !== undefined ? { iova: a.iova } : {}),
        length: a.length,
        pa: a.pa,
        prot: a.prot,
      }),
    ioasUnmap: (ioas, iova, length) => host.ioasUnmap(ioas, iova, length),
    ioasUnmapAll: (ioas) => host.ioasUnmapAll(ioas),
    ioasCopy: (a) =>
      host.ioasCopy({
        src: a.src,
        srcIova: a.srcIova,
        dst: a.dst,
        ...(a.dstIova !== undefined ? { dstIova: a.dstIova } : {}),
        length: a.length,
        prot: a.prot,
      }),
    ioasIovaRanges: (ioas) => host.ioasIovaRanges(ioas),
    ioasAllowIovas: (ioas, ranges) => host.ioasAllowIovas(ioas, ranges),
    hwptAlloc: (a) =>
      host.hwptAlloc({
        device: a.device,
        pt: a.pt,
        flags: a.flags,
        ...(a.data !== undefined ? { data: a.data } : {}),
        ...(a.faultQueue !== undefined ? { faultQueue: a.faultQueue } : {}),
      }),
    viommuAlloc: (a) => host.viommuAlloc(a),
    vdeviceAlloc: (a) => host.vdeviceAlloc(a),
    veventqAlloc: (a) => host.veventqAlloc(a),
    veventqRead: (id, max) => host.veventqRead(id, max),
    faultQueueAlloc: () => host.faultQueueAlloc(),
    faultQueueRead: (id, max) =>
      host.faultQueueRead(id, max).map((r) => ({ ...r, devId: names.get(r.devId) ?? r.devId })),
    faultRespond: (id, cookie, code) => host.faultRespond(id, { cookie, code }).map(dmaOut),
    attach: (device, intent, pt) => host.attach(device, intent, pt),
    replace: (device, intent, pt) => host.replace(device, intent, pt),
    detach: (device, intent) => host.detach(device, intent),
    hwInfo(device) {
      const h = host.hwInfo(device);
      return {
        capabilities: h.capabilities,
        flags: h.flags,
        maxPasidLog2: h.maxPasidLog2,
        type: h.type,
        data: h.data,
        intents: h.intents,
      };
    },
    dma(device, a) {
      const r = host.dma(device, {
        ...(a.pasid !== undefined ? { pasid: a.pasid } : {}),
        iova: a.iova,
        access: a.access,
        priv: a.priv,
        ...(a.access === "write" ? { data: a.data ?? new Uint8Array(0) } : { length: a.length }),
      });
      return dmaOut(r);
    },
    faultsRead: (device) => host.faultsRead(device).map((f) => fault(f as unknown as HostFault)),
    invalidate: (hwpt, entries) => host.invalidate(hwpt, entries),
    dirtySet: (hwpt, enable) => host.dirtySet(hwpt, enable),
    dirtyRead: (hwpt, iova, length, pageSize, noClear) =>
      host.dirtyRead(hwpt, { iova, length, pageSize, noClear }),
    accessPin: (device, iova, length, write) => host.accessPin(device, iova, length, write),
    accessUnpin: (device, iova, length) => host.accessUnpin(device, iova, length),
    accessRead: (device, iova, length) => host.accessRw(device, { iova, length, write: false })!,
    accessWrite: (device, iova, data) => {
      host.accessRw(device, { iova, data, write: true });
    },
    memWrite: (pa, data) => host.memWrite(pa, data),
    memRead: (pa, length) => host.memRead(pa, length),
    destroy: (id) => host.destroy(id),
    backendOf(device) {
      const o = info(device);
      return { backend: host.iommu(o.iommu!), rid: o.rid! };
    },
    routeOf(device, pasid) {
      const o = host.describe(devId(device)) as unknown as {
        iommu: string;
        rid: number;
        parent: number | null;
        pasids: [number, number][];
      };
      if (o.parent !== null) {
        const p = pasid ?? o.pasids[0]?.[0] ?? null;
        if (p !== null) {
          const po = host.describe(o.parent) as unknown as { iommu: string; rid: number };
          return {
            backend: host.iommu(po.iommu),
            rid: po.rid,
            pasid: p,
            via: names.get(o.parent) ?? String(o.parent),
          };
        }
      }
      return { backend: host.iommu(o.iommu), rid: o.rid, pasid, via: null };
    },
    explain(device, req) {
      return host.explain(devId(device), req);
    },
    dump(device) {
      if (device !== undefined) return host.dump(devId(device));
      const out: Record<string, unknown> = {};
      for (const m of host.iommus()) {
        const b = host.iommu(m.name);
        out[m.name] = b.dump === undefined ? `(${m.backend} cannot dump)` : b.dump();
      }
      // iommufd's own objects over them: vIOMMUs with their vDEVICEs and vEVENTQs.
      const viommus = adapter.viommuTable();
      if (viommus.length > 0) out.vIOMMUs = viommus;
      return out;
    },
  };
  return adapter;
}

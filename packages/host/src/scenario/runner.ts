/**
 * The scenario runner: builds a host from a validated scenario (memory, IOMMUs,
 * devices), runs its steps in order, and checks each step's outcome against its
 * `expect` (matcher.ts). Objects are named by the scenario (`as`); the runner keeps
 * the name -> host id table. A step without `expect` that throws fails the run; a DMA
 * fault without `expect` is only reported.
 */

import type { AttachIntent, CacheCounters, Capabilities, FaultClass, VendorFault } from "@iommu-kit/core";
import { hwCapNames, isIommuError, parsePerm } from "@iommu-kit/core";
import type { CapRow, HostAdapter, HostDmaResult } from "./host-adapter.ts";
import type { Scenario, StepDecl } from "./load.ts";
import type { FaultJson, Outcome } from "./matcher.ts";
import { checkExpect } from "./matcher.ts";
import { hexToBytes, jsonable, toHex, toNum } from "./values.ts";

// CapRow lives with the adapter that returns it; re-exported for the runner's users.
export type { CapRow } from "./host-adapter.ts";

/** The record of one step, as the report and `--json` show it. */
export interface StepRecord {
  readonly file: string;
  /** 1-based step number. */
  readonly step: number;
  /** The step's `name`, or a short description. */
  readonly label: string;
  readonly op: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly outcome: Outcome;
  readonly expect?: Readonly<Record<string, unknown>>;
  readonly pass: boolean;
  /** Why it failed (expected vs actual lines). */
  readonly mismatches: readonly string[];
}

/** The result of one scenario file. */
export interface FileReport {
  readonly file: string;
  readonly name: string;
  readonly caps: readonly CapRow[];
  readonly steps: readonly StepRecord[];
  readonly counters: Readonly<Record<string, CacheCounters>>;
  readonly pass: boolean;
}

/** Options of {@link runScenario}. */
export interface RunOptions {
  /** Called after each step (progress, streaming --json). */
  readonly onStep?: (r: StepRecord) => void;
  /** Stop after the first failing step (default: run every step). */
  readonly stopOnFailure?: boolean;
}

/** The fault shape results carry: the generic class, the vendor record flattened. */
export function faultJson(f: {
  readonly class: FaultClass;
  readonly recorded: boolean;
  readonly vendor: VendorFault;
  readonly [k: string]: unknown;
}): FaultJson {
  const { class: cls, recorded, vendor, ...rest } = f;
  const out: Record<string, unknown> = {
    class: cls,
    name: vendor.name,
    code: vendor.code,
    recorded,
    vendor: vendor.vendor,
    fields: jsonable(vendor.fields),
  };
  for (const [k, v] of Object.entries(rest)) out[k] = jsonable(v);
  if (typeof out.iova === "number") out.iova = toHex(out.iova);
  return out as unknown as FaultJson;
}

/** One capability row per device. */
export function capRow(device: string, iommu: string, backend: string, rid: number, c: Capabilities): CapRow {
  const hw = c.hwInfo;
  const hwInfo =
    hw.type === "arm-smmuv3"
      ? `IDR0=${toHex(hw.idr[0])} IDR1=${toHex(hw.idr[1])} IDR5=${toHex(hw.idr[5])}`
      : hw.type === "intel-vtd"
        ? `CAP=${toHex(hw.capReg)} ECAP=${toHex(hw.ecapReg)}`
        : "none";
  return {
    device,
    iommu,
    backend,
    rid,
    intents: c.intents,
    maxPasidLog2: c.maxPasidLog2,
    pasidAssignment: c.pasidAssignment,
    inputAddressBits: c.inputAddressBits,
    outputAddressBits: c.outputAddressBits,
    formats: c.formats,
    flags: hwCapNames(c),
    nesting: c.features.nesting,
    hwInfo,
  };
}

function intentOf(target: unknown): AttachIntent {
  if (target === "rid") return { kind: "rid" };
  if (target === "rid-all-pasids") return { kind: "rid-all-pasids" };
  if (target === "emulated") return { kind: "emulated" };
  const p = (target as { pasid: unknown }).pasid;
  return { kind: "pasid", pasid: p === "auto" ? "auto" : toNum(p as string) };
}

function label(st: StepDecl): string {
  if (st.name !== undefined) return st.name;
  const parts: string[] = [st.op];
  for (const k of ["device", "ioas", "hwpt", "pt", "viommu", "veventq", "fault", "id", "src", "dst"]) {
    if (typeof st[k] === "string") parts.push(`${k}=${st[k] as string}`);
  }
  if (st.target !== undefined)
    parts.push(`target=${typeof st.target === "string" ? st.target : JSON.stringify(st.target)}`);
  if (st.iova !== undefined) parts.push(`iova=${String(st.iova)}`);
  if (st.pa !== undefined) parts.push(`pa=${String(st.pa)}`);
  if (st.as !== undefined) parts.push(`as ${st.as}`);
  return parts.join(" ");
}

/** Runs one scenario on a fresh host. */
export async function runScenario(
  scenario: Scenario,
  file: string,
  makeHost: (s: Scenario) => Promise<HostAdapter>,
  options: RunOptions = {},
): Promise<FileReport> {
  const host = await makeHost(scenario);
  const caps = host.capTable();
  const names = new Map<string, number>();
  const byId = new Map<number, string>();
  const steps: StepRecord[] = [];
  let pass = true;
  for (const [i, st] of scenario.steps.entries()) {
    const { op, as: _as, name: _n, expect, comment: _c, ...args } = st;
    let outcome: Outcome;
    try {
      outcome = execStep(host, st, names, byId);
    } catch (e) {
      outcome = {
        kind: "error",
        error: isIommuError(e)
          ? { code: e.code, message: e.message }
          : {
              code: (e as { code?: string }).code ?? (e as Error).name ?? "Error",
              message: String((e as Error).message ?? e),
            },
      };
    }
    const mismatches = checkExpect(expect, outcome);
    const rec: StepRecord = {
      file,
      step: i + 1,
      label: label(st),
      op,
      args,
      outcome,
      ...(expect !== undefined ? { expect } : {}),
      pass: mismatches.length === 0,
      mismatches,
    };
    steps.push(rec);
    options.onStep?.(rec);
    if (!rec.pass) {
      pass = false;
      if (options.stopOnFailure) break;
    }
  }
  return { file, name: scenario.name ?? file, caps, steps, counters: host.counters(), pass };
}

/** A DMA result as steps report it: pa and data, or the fault (and `pending`, `cookie` when held). */
function dmaJson(r: HostDmaResult): Record<string, unknown> {
  if (r.ok) return { pa: toHex(r.pa), ...(r.data !== undefined ? { data: jsonable(r.data) } : {}) };
  const f = faultJson(r.fault);
  return r.pending === true ? { fault: f, pending: true, cookie: r.cookie } : { fault: f };
}

function num(v: unknown): number {
  return toNum(v as string);
}
function opt(v: unknown): number | undefined {
  return v === undefined ? undefined : toNum(v as string);
}

/** Executes one step; throws what the host throws. */
function execStep(
  host: HostAdapter,
  st: StepDecl,
  names: Map<string, number>,
  byId: Map<number, string>,
): Outcome {
  const obj = (k: string): number => {
    const n = st[k] as string;
    const id = names.get(n);
    if (id === undefined)
      throw Object.assign(new Error(`ENOENT: ${n} does not exist (destroyed, or its step failed)`), {
        code: "ENOENT",
      });
    return id;
  };
  const dev = (k = "device"): number => host.deviceId(st[k] as string);
  const name = (id: number): string | number => byId.get(id) ?? id;
  const bind = (id: number): void => {
    if (st.as === undefined) return;
    names.set(st.as, id);
    byId.set(id, st.as);
    host.nameObject?.(id, st.as);
  };
  const ok = (result: Record<string, unknown> = {}): Outcome => ({ kind: "result", result });
  switch (st.op) {
    case "ioas.alloc": {
      bind(host.ioasAlloc());
      return ok();
    }
    case "ioas.map": {
      const iova = host.ioasMap(obj("ioas"), {
        iova: opt(st.iova),
        length: num(st.length),
        pa: num(st.pa),
        prot: parsePerm((st.prot as string | undefined) ?? "rw"),
      });
      return ok({ iova: toHex(iova) });
    }
    case "ioas.unmap": {
      const n =
        st.all === true
          ? host.ioasUnmapAll(obj("ioas"))
          : host.ioasUnmap(obj("ioas"), num(st.iova), num(st.length));
      return ok({ length: toHex(n) });
    }
    case "ioas.copy": {
      const iova = host.ioasCopy({
        src: obj("src"),
        srcIova: num(st.srcIova),
        dst: obj("dst"),
        dstIova: opt(st.dstIova),
        length: num(st.length),
        prot: parsePerm((st.prot as string | undefined) ?? "rw"),
      });
      return ok({ iova: toHex(iova) });
    }
    case "ioas.iova_ranges": {
      const r = host.ioasIovaRanges(obj("ioas"));
      return ok({
        ranges: r.ranges.map((x) => ({ start: toHex(x.start), last: toHex(x.last) })),
        alignment: toHex(r.alignment),
      });
    }
    case "ioas.allow_iovas": {
      const ranges = (st.ranges as { start: unknown; last: unknown }[]).map((r) => ({
        start: num(r.start),
        last: num(r.last),
      }));
      host.ioasAllowIovas(obj("ioas"), ranges);
      return ok();
    }
    case "hwpt.alloc": {
      const flags = (st.flags as string[] | undefined) ?? [];
      const id = host.hwptAlloc({
        device: dev(),
        pt: obj("pt"),
        flags: {
          ...(flags.includes("nest_parent") ? { nestParent: true } : {}),
          ...(flags.includes("dirty_tracking") ? { dirtyTracking: true } : {}),
          ...(flags.includes("pasid") ? { pasid: true } : {}),
        },
        data: st.data,
        faultQueue: st.faultQueue === undefined ? undefined : obj("faultQueue"),
      });
      bind(id);
      return ok({ hwpt: name(id) });
    }
    case "viommu.alloc": {
      const id = host.viommuAlloc({ device: dev(), hwpt: obj("hwpt"), type: st.type as string });
      bind(id);
      return ok({ viommu: name(id) });
    }
    case "vdevice.alloc": {
      const id = host.vdeviceAlloc({ viommu: obj("viommu"), device: dev(), virtId: num(st.virtId) });
      bind(id);
      return ok({ vdevice: name(id) });
    }
    case "veventq.alloc": {
      const id = host.veventqAlloc({ viommu: obj("viommu"), type: st.type as string, depth: num(st.depth) });
      bind(id);
      return ok({ veventq: name(id) });
    }
    case "veventq.read": {
      const events = host.veventqRead(obj("veventq"), opt(st.max));
      return ok({
        events: events.map((e) => ({ flags: e.flags, sequence: e.sequence, data: jsonable(e.data) })),
      });
    }
    case "fault.alloc": {
      bind(host.faultQueueAlloc());
      return ok();
    }
    case "fault.read": {
      const faults = host.faultQueueRead(obj("fault"), opt(st.max));
      return ok({ faults: faults.map((f) => ({ ...f, addr: toHex(f.addr as number) })) });
    }
    case "fault.respond": {
      const rs = host.faultRespond(obj("fault"), num(st.cookie), st.code as "success" | "invalid");
      return ok({ results: rs.map(dmaJson) });
    }
    case "attach":
    case "replace": {
      const intent = intentOf(st.target);
      const r =
        st.op === "attach" ? host.attach(dev(), intent, obj("pt")) : host.replace(dev(), intent, obj("pt"));
      if (st.as !== undefined && !byId.has(r.hwpt)) bind(r.hwpt);
      return ok({ hwpt: name(r.hwpt), ...(r.pasid !== undefined ? { pasid: r.pasid } : {}) });
    }
    case "detach": {
      host.detach(dev(), intentOf(st.target));
      return ok();
    }
    case "hw_info":
      return ok(host.hwInfo(dev()));
    case "dma": {
      const access = (st.access as "read" | "write" | "exec" | undefined) ?? "read";
      const data = st.data === undefined ? undefined : hexToBytes(st.data as string);
      const length = st.length === undefined ? (data?.length ?? 4) : num(st.length);
      const r = host.dma(dev(), {
        pasid: opt(st.pasid),
        iova: num(st.iova),
        access,
        priv: st.priv === true,
        length,
        data,
      });
      if (r.ok) return ok({ pa: toHex(r.pa), ...(r.data !== undefined ? { data: jsonable(r.data) } : {}) });
      const f = faultJson(r.fault);
      return { kind: "fault", fault: f, result: dmaJson(r) };
    }
    case "faults.read": {
      const faults = host.faultsRead(st.device === undefined ? undefined : dev());
      return ok({ faults: faults.map((f) => faultJson(f)) });
    }
    case "invalidate":
      return ok({ handled: host.invalidate(obj("hwpt"), st.data as unknown[]) });
    case "dirty.set":
      host.dirtySet(obj("hwpt"), st.enable === true);
      return ok();
    case "dirty.read": {
      const bm = host.dirtyRead(
        obj("hwpt"),
        num(st.iova),
        num(st.length),
        opt(st.pageSize) ?? 4096,
        st.noClear === true,
      );
      return ok({ bitmap: jsonable(bm) });
    }
    case "access.pin":
      return ok({ pages: host.accessPin(dev(), num(st.iova), num(st.length), st.write === true).map(toHex) });
    case "access.unpin":
      host.accessUnpin(dev(), num(st.iova), num(st.length));
      return ok();
    case "access.rw": {
      if (st.write === true) {
        host.accessWrite(dev(), num(st.iova), hexToBytes(st.data as string));
        return ok();
      }
      return ok({ data: jsonable(host.accessRead(dev(), num(st.iova), num(st.length))) });
    }
    case "mem.write":
      host.memWrite(num(st.pa), hexToBytes(st.data as string));
      return ok();
    case "mem.read":
      return ok({ data: jsonable(host.memRead(num(st.pa), num(st.length))) });
    case "destroy": {
      const id = obj("id");
      host.destroy(id);
      names.delete(st.id as string);
      byId.delete(id);
      return ok();
    }
    default:
      throw new Error(`unknown op ${st.op}`);
  }
}

/**
 * What `translate`, `explain` and `dump` work on. A snapshot: memory images
 * (`--memory`, JSONL page lists, ELF cores, raw at a base), zero-filled RAM (`--ram`),
 * register values (`--regs`: JSON, or VT-d debugfs `iommu_regset` text) and a backend
 * (`--arch`); or all of it from one folder laid out as fixtures/snapshots
 * (`--snapshot DIR`: memory.jsonl, regs.json, expect.jsonl). Or a scenario host after
 * its steps ran.
 */

import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { Backend } from "@iommu-kit/core";
import type { ScenarioHost } from "../scenario/host.ts";
import { runScenario } from "../scenario/runner.ts";
import { findFactory, thrownText } from "./backends.ts";
import { UsageError } from "./errors.ts";
import type { RamDecl } from "./images.ts";
import { loadImage, parseRam, pointerWarnings, progress } from "./images.ts";
import { hostFor, loadPlugins, parseJson, parseNum, readText, scenarioFrom } from "./input.ts";
import type { RawRegisters } from "./registers.ts";
import {
  isRegsetText,
  registersFromJson,
  registersFromRegset,
  resolveRegisters,
  tablePointers,
} from "./registers.ts";
import type { Segment } from "./snapshot.ts";
import { memoryFromSegments } from "./snapshot.ts";

/** Options shared by the snapshot commands. */
export interface SnapshotOpts {
  arch?: string;
  memory: string[];
  ram: string[];
  regs?: string;
  unit?: string;
  snapshot?: string;
  strict?: boolean;
  plugin: string[];
}

/** A loaded snapshot. */
export interface Snapshot {
  readonly backend: Backend;
  /** The requests file of a `--snapshot` folder (expect.jsonl), if it has one. */
  readonly requests: string | null;
}

/**
 * RAM a `--snapshot` folder stands for when no `--ram` is given: [0, 2^40). Its
 * memory.jsonl holds only the IOMMU's pages; "everything else of guest RAM is omitted;
 * treat it as zero-filled RAM" (fixtures/snapshots/README.md).
 */
const SNAPSHOT_RAM: RamDecl = { base: 0, size: 2 ** 40 };

/** The backend of a snapshot folder: `--arch`, else its name's prefix, else its registers. */
function archOf(dir: string, raw: RawRegisters): string {
  const m = /^(smmuv3|vtd)-/.exec(basename(dir.replace(/\/+$/, "")));
  if (m !== null) return m[1]!;
  if (raw.has("STRTAB_BASE")) return "smmuv3";
  if (raw.has("RTADDR")) return "vtd";
  throw new UsageError(`--snapshot ${dir}: cannot tell the backend from its name or registers: give --arch`);
}

function readRegisters(file: string, unit: string | undefined): RawRegisters {
  const text = readText(file, "--regs");
  if (isRegsetText(text)) return registersFromRegset(text, file, unit);
  if (unit !== undefined) throw new UsageError(`--unit ${unit}: ${file} is not debugfs iommu_regset text`);
  return registersFromJson(parseJson(text, file), file);
}

/** True when the options name a snapshot rather than a scenario. */
export function isSnapshot(o: SnapshotOpts): boolean {
  return (
    o.arch !== undefined ||
    o.memory.length > 0 ||
    o.ram.length > 0 ||
    o.regs !== undefined ||
    o.snapshot !== undefined
  );
}

/** Loads the snapshot the options describe; warnings go to stderr (`--strict`: exit 2). */
export async function snapshotFrom(o: SnapshotOpts): Promise<Snapshot> {
  await loadPlugins(o.plugin, process.cwd());
  let memory = o.memory;
  let regsFile = o.regs;
  let requests: string | null = null;
  const ram = o.ram.map(parseRam);
  if (o.snapshot !== undefined) {
    const dir = o.snapshot;
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw new UsageError(`--snapshot ${dir}: ENOENT: not a folder`);
    const need = (f: string): string => {
      const p = join(dir, f);
      if (!existsSync(p)) throw new UsageError(`--snapshot ${dir}: ENOENT: no ${f}`);
      return p;
    };
    if (memory.length === 0) memory = [need("memory.jsonl")];
    regsFile ??= need("regs.json");
    requests = existsSync(join(dir, "expect.jsonl")) ? join(dir, "expect.jsonl") : null;
    if (ram.length === 0) ram.push(SNAPSHOT_RAM);
  }
  const raw = regsFile === undefined ? new Map() : readRegisters(regsFile, o.unit);
  const arch = o.arch ?? (o.snapshot !== undefined ? archOf(o.snapshot, raw) : undefined);
  if (arch === undefined) throw new UsageError("--arch NAME is required (a backend name: smmuv3, vtd, ...)");
  if (memory.length === 0 && ram.length === 0)
    throw new UsageError("--memory FILE[@BASE] (or --ram BASE+SIZE, or --snapshot DIR) is required");
  const factory = await findFactory(arch);
  if (factory.fromRegisters === undefined || factory.registerDefaults === undefined)
    throw new UsageError(`backend ${factory.name} cannot load snapshots (no fromRegisters)`);
  const segments: Segment[] = [];
  for (const m of memory) segments.push(...loadImage(m));
  progress.clear();
  const { registers } = resolveRegisters(raw, factory.registerDefaults, factory.name);
  const values = new Map<string, bigint>([
    ...Object.entries(registers),
    ...[...raw].map(([k, v]) => [k, v.value] as const),
  ]);
  const warnings = pointerWarnings(tablePointers(factory.name), values, segments);
  for (const w of warnings) process.stderr.write(`iommu-kit: warning: ${w}\n`);
  if (o.strict && warnings.length > 0)
    throw new UsageError(`--strict: ${warnings.length} table pointer(s) outside every memory image`);
  const mem = memoryFromSegments(segments, ram);
  try {
    return { backend: factory.fromRegisters(mem, registers), requests };
  } catch (e) {
    throw new UsageError(`${factory.name}: cannot use these registers: ${thrownText(e)}`);
  }
}

/** PCIe PASIDs are 20 bits (PCIe 6.20; VT-d and SMMUv3 SSIDs alike). */
export const PASID_LIMIT: bigint = 1n << 20n;

/** What explain/dump work on: a snapshot backend, or a scenario host after its steps ran. */
export type Target =
  | { readonly kind: "snapshot"; readonly backend: Backend; readonly rid: number | undefined }
  | { readonly kind: "scenario"; readonly host: ScenarioHost; readonly device: string | undefined };

/** Options of explain/dump. */
export interface TargetOpts extends SnapshotOpts {
  sid?: string;
  device?: string;
  pasid?: string;
  json?: boolean;
}

/** The snapshot or scenario host the options name. */
export async function targetOf(
  file: string | undefined,
  o: TargetOpts,
  needDevice: boolean,
): Promise<Target> {
  if (isSnapshot(o)) {
    if (file !== undefined)
      throw new UsageError(
        "give a scenario FILE or a snapshot (--snapshot/--arch/--memory/--regs), not both",
      );
    if (o.device !== undefined)
      throw new UsageError("--device names a scenario device; use --sid with a snapshot");
    if (o.sid === undefined && needDevice) throw new UsageError("--sid N is required with a snapshot");
    const rid = o.sid === undefined ? undefined : Number(parseNum(o.sid, "--sid", 1n << 32n));
    const { backend } = await snapshotFrom(o);
    return { kind: "snapshot", backend, rid };
  }
  if (o.sid !== undefined) throw new UsageError("--sid is for snapshots; use --device NAME with a scenario");
  await loadPlugins(o.plugin, process.cwd());
  const { scenario, file: name, baseDir } = await scenarioFrom(file);
  const devices = (scenario.devices ?? []).map((d) => d.name);
  if (o.device === undefined && needDevice)
    throw new UsageError(`--device NAME is required (devices: ${devices.join(", ") || "none"})`);
  if (o.device !== undefined && !devices.includes(o.device))
    throw new UsageError(
      `--device ${o.device}: no device of that name in ${name} (devices: ${devices.join(", ") || "none"})`,
    );
  const host = await hostFor(scenario, name, baseDir);
  await runScenario(scenario, name, async () => host);
  return { kind: "scenario", host, device: o.device };
}

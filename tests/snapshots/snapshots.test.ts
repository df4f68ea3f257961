/**
 * Real-world snapshots (fixtures/snapshots): tables an unmodified Linux 6.1 driver wrote
 * under QEMU 7.2, and the translations the guest kernel itself logged (iommu:map trace
 * events). Each snapshot is loaded as a sparse memory image, a hardware-model-only
 * backend is built from the captured register values (the factory's `fromRegisters`),
 * and every expected line is translated: exact PA and permissions, or a fault (with the
 * spec's code where the fixture pins one).
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  accessFlags,
  type BackendFactory,
  createTranslation,
  NO_PASID,
  PhysicalMemory,
  permString,
} from "@iommu-kit/core";
import { smmuv3Backend } from "@iommu-kit/smmuv3";
import { vtdBackend } from "@iommu-kit/vtd";
import { describe, expect, it } from "vitest";

const dir = new URL("../../fixtures/snapshots/", import.meta.url).pathname;

interface ExpectLine {
  sid: number;
  pasid: number | null;
  iova: string;
  access: "read" | "write" | "exec";
  priv: boolean;
  pa?: string;
  perm?: string;
  fault?: boolean;
  reason?: string | null;
  why?: string;
}

function load(name: string, factory: BackendFactory) {
  const memory = new PhysicalMemory([{ base: 0, size: 2 ** 40 }]);
  for (const line of readFileSync(join(dir, name, "memory.jsonl"), "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const { pa, hex } = JSON.parse(line) as { pa: string; hex: string };
    memory.write(Number(pa), Buffer.from(hex, "hex"));
  }
  const raw = JSON.parse(readFileSync(join(dir, name, "regs.json"), "utf8")) as Record<string, string>;
  const known = new Set(Object.keys(factory.registerDefaults ?? {}));
  const regs: Record<string, bigint> = {};
  for (const [k, v] of Object.entries(raw)) if (known.has(k)) regs[k] = BigInt(v);
  const backend = factory.fromRegisters!(memory, regs);
  const lines = readFileSync(join(dir, name, "expect.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as ExpectLine);
  return { backend, lines };
}

const snapshots = readdirSync(dir, { withFileTypes: true })
  .filter((e) => e.isDirectory() && e.name !== "tools")
  .map((e) => e.name)
  .sort();

describe("real driver snapshots", () => {
  it("has snapshots of both architectures", () => {
    expect(snapshots.some((s) => s.startsWith("vtd-"))).toBe(true);
    expect(snapshots.some((s) => s.startsWith("smmuv3-"))).toBe(true);
  });

  for (const name of snapshots) {
    const factory = name.startsWith("smmuv3") ? smmuv3Backend : vtdBackend;
    it(`${name}: every logged translation and every pinned fault`, () => {
      const { backend, lines } = load(name, factory);
      expect(lines.length).toBeGreaterThan(0);
      const out = createTranslation();
      const mismatches: string[] = [];
      for (const l of lines) {
        const ok = backend.translate(
          l.sid,
          l.pasid ?? NO_PASID,
          Number(l.iova),
          accessFlags(l.access, l.priv),
          out,
        );
        const where = `sid ${l.sid} pasid ${l.pasid} iova ${l.iova} ${l.access}`;
        if (l.fault) {
          if (ok)
            mismatches.push(`${where}: translated to 0x${out.pa.toString(16)}, expected a fault (${l.why})`);
          else if (l.reason != null && out.fault!.vendor.code !== Number(l.reason)) {
            mismatches.push(
              `${where}: code ${out.fault!.vendor.code} (${out.fault!.vendor.name}), expected ${l.reason}`,
            );
          }
        } else if (!ok) {
          mismatches.push(
            `${where}: fault ${out.fault!.vendor.name} (${out.fault!.class}), expected pa ${l.pa}`,
          );
        } else {
          if (out.pa !== Number(l.pa))
            mismatches.push(`${where}: pa 0x${out.pa.toString(16)}, expected ${l.pa}`);
          if (l.perm !== undefined && permString(out.perm).replace("x", "") !== l.perm) {
            mismatches.push(`${where}: perm ${permString(out.perm)}, expected ${l.perm}`);
          }
        }
      }
      expect(mismatches.slice(0, 20)).toEqual([]);
    });
  }
});

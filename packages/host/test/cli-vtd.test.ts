/**
 * `iommu-kit translate / explain / dump` on a VT-d snapshot in legacy mode, written the
 * way a driver would (VT-d spec 3.4.2 root/context entries, 9.1-9.3; 4-level
 * second-stage table, 9.8), through the built binary and the real vtd backend.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const cli = (args: readonly string[], input?: string) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input, timeout: 30_000 });

const BASE = 0x10000;
function image(): Uint8Array {
  const img = new Uint8Array(0x6000);
  const v = new DataView(img.buffer);
  const put = (pa: number, w: bigint) => v.setBigUint64(pa - BASE, w, true);
  // Root entry of bus 1: P[0], CTP[63:12] = 0x11000.
  put(0x10000 + 1 * 16, 0x11000n | 1n);
  // Context entry of devfn 8 (dev 1, fn 0): P[0], FPD[1] = 0, TT[3:2] = 0 (second stage), SLPTPTR[63:12];
  // upper: AW[2:0] = 0b010 (48-bit, 4-level), DID[23:8] = 1.
  put(0x11000 + 8 * 16, 0x12000n | 1n);
  put(0x11000 + 8 * 16 + 8, 0b010n | (1n << 8n));
  // IOVA 0x40000000: indices 0, 1, 0, 0. Entries: R[0], W[1], address [51:12].
  put(0x12000, 0x13000n | 3n);
  put(0x13000 + 8, 0x14000n | 3n);
  put(0x14000, 0x15000n | 3n);
  put(0x15000, 0x80000n | 1n); // read-only page
  return img;
}

let dir = "";
let args: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iommu-kit-vtd-"));
  writeFileSync(join(dir, "tables.bin"), image());
  writeFileSync(join(dir, "page.bin"), new Uint8Array(0x1000));
  // RTADDR: TTM[11:10] = 00 (legacy); GSTS: TES[31], RTPS[30].
  writeFileSync(join(dir, "regs.json"), JSON.stringify({ RTADDR: "0x10000", GSTS: "0xc0000000" }));
  args = [
    "--arch",
    "vtd",
    "--memory",
    `${join(dir, "tables.bin")}@0x10000`,
    "--memory",
    `${join(dir, "page.bin")}@0x80000`,
    "--regs",
    join(dir, "regs.json"),
  ];
});

describe("VT-d snapshot (legacy mode)", () => {
  it("translates through root -> context -> second stage; faults carry the spec's fault reasons", () => {
    const reqs = [
      { sid: 0x108, iova: "0x40000123", access: "read" },
      { sid: 0x108, iova: "0x40000000", access: "write" },
      { sid: 0x108, iova: "0x40001000", access: "read" },
      { sid: 0x208, iova: "0x0" },
      { sid: 0x109, iova: "0x0" },
    ];
    const r = cli(["translate", ...args, "--requests", "-"], reqs.map((x) => JSON.stringify(x)).join("\n"));
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(out[0]).toMatchObject({ sid: 0x108, pa: "0x80123" });
    expect(out[0].perm).toMatch(/^rx?$/); // read-only: no w (x follows R where the unit has no execute control)
    expect(out[1].fault).toMatchObject({ class: "permission", code: 0x5 }); // write to a page with W = 0
    expect(out[2].fault).toMatchObject({ code: 0x6 }); // read of an entry with R = 0
    expect(out[3].fault).toMatchObject({ code: 0x1 }); // root entry not present
    expect(out[4].fault).toMatchObject({ code: 0x2 }); // context entry not present
  });

  it("translation disabled (GSTS.TES = 0) passes addresses through untranslated", () => {
    const off = join(dir, "off.json");
    writeFileSync(off, JSON.stringify({ RTADDR: "0x10000", GSTS: 0 }));
    const a = [...args];
    a[a.indexOf(join(dir, "regs.json"))] = off;
    const r = cli(["translate", ...a, "--requests", "-"], '{"sid": 264, "iova": "0x1234"}');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ pa: "0x1234" });
  });

  it("explains the walk and dumps the tables", () => {
    const ex = cli(["explain", ...args, "--sid", "0x108", "--iova", "0x40000123", "--json"]);
    expect(ex.stderr).toBe("");
    expect(ex.status).toBe(0);
    const addrs = JSON.parse(ex.stdout).steps.map((s: { address: string | null }) => s.address);
    expect(addrs).toEqual(
      expect.arrayContaining(["0x10010", "0x11080", "0x12000", "0x13008", "0x14000", "0x15000"]),
    );
    const dump = cli(["dump", ...args]);
    expect(dump.stderr).toBe("");
    expect(dump.status).toBe(0);
    expect(dump.stdout.length).toBeGreaterThan(0);
  });
});

/**
 * `iommu-kit translate / explain / dump` on an SMMUv3 snapshot written the way a
 * driver would (ARM IHI 0070: linear stream table, STE -> CD -> VMSAv8-64 stage 1),
 * through the built binary and the real smmuv3 backend's `fromRegisters`.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildElfCore } from "./cli-fixtures/elf.ts";

const BIN = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const cli = (args: readonly string[], input?: string) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input, timeout: 30_000 });

// Image of [0x10000, 0x40000): stream table at 0x10000 (LOG2SIZE 8, 64-byte STEs), CD at 0x20000,
// stage-1 tables at 0x30000-0x33fff. The data page is PA 0x80000 (a second image).
const BASE = 0x10000;
const STRTAB = 0x10000n;
const CD = 0x20000n;
function image(): Uint8Array {
  const img = new Uint8Array(0x30000);
  const v = new DataView(img.buffer);
  const put = (pa: bigint, w: bigint) => v.setBigUint64(Number(pa) - BASE, w, true);
  // STE 5: V[0], Config[3:1] = 0b101 (stage 1 only), S1Fmt[5:4] = 0, S1ContextPtr[51:6], S1CDMax = 0.
  put(STRTAB + 5n * 64n, 1n | (0b101n << 1n) | CD);
  // STE 6 stays V = 0. CD 0: T0SZ = 16, TG0 = 4K, IRGN0/ORGN0 = WBWA, SH0 = ISH, EPD1, V, IPS = 48 bits,
  // AA64, R, A, ASID 7 (Linux CTXDESC_CD_0_*); word 1 = TTB0.
  put(
    CD,
    16n |
      (1n << 8n) |
      (1n << 10n) |
      (3n << 12n) |
      (1n << 30n) |
      (1n << 31n) |
      (5n << 32n) |
      (1n << 41n) |
      (1n << 45n) |
      (1n << 46n) |
      (7n << 48n),
  );
  put(CD + 8n, 0x30000n);
  put(CD + 24n, 0xffn); // MAIR0
  // VA 0x40000000: L0[0] -> L1 0x31000, L1[1] -> L2 0x32000, L2[0] -> L3 0x33000, L3[0] -> page 0x80000.
  put(0x30000n, 0x31000n | 3n);
  put(0x31000n + 8n, 0x32000n | 3n);
  put(0x32000n, 0x33000n | 3n);
  // Page: AP[7:6] = 0b01 (RW, EL0 too), SH[9:8] = ISH, AF[10].
  put(0x33000n, 0x80000n | 3n | (1n << 6n) | (3n << 8n) | (1n << 10n));
  return img;
}

let dir = "";
let regs = "";
let img = "";
let page = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iommu-kit-smmu-"));
  img = join(dir, "tables.bin");
  writeFileSync(img, image());
  page = join(dir, "page.bin");
  writeFileSync(page, new Uint8Array(0x1000));
  regs = join(dir, "regs.json");
  // CR0.SMMUEN; STRTAB_BASE_CFG: FMT[17:16] = linear, LOG2SIZE[5:0] = 8.
  writeFileSync(
    regs,
    JSON.stringify({ CR0: 1, STRTAB_BASE: `0x${STRTAB.toString(16)}`, STRTAB_BASE_CFG: 8 }),
  );
});

const requests = [
  { sid: 5, pasid: null, iova: "0x40000123", access: "write", priv: false },
  { sid: 5, iova: "0x40001000", access: "read" },
  { sid: 6, iova: "0x0" },
  { sid: 300, iova: "0x0" },
]
  .map((r) => JSON.stringify(r))
  .join("\n");

describe("SMMUv3 snapshot", () => {
  const mem = (): string[] => ["--memory", `${img}@0x10000`, "--memory", `${page}@0x80000`];

  it("translates through STE -> CD -> stage 1, with the spec's event IDs for faults", () => {
    const r = cli(["translate", "--arch", "smmuv3", ...mem(), "--regs", regs, "--requests", "-"], requests);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(out[0]).toMatchObject({ sid: 5, iova: "0x40000123", pa: "0x80123" });
    expect(out[0].perm).toMatch(/^rw/);
    // CR0.EVENTQEN = 0: the event is raised but not written to an event queue.
    expect(out[1].fault).toMatchObject({
      class: "translation",
      name: "F_TRANSLATION",
      code: 0x10,
      recorded: false,
      vendor: "arm-smmuv3",
    });
    expect(out[2].fault).toMatchObject({ name: "C_BAD_STE", code: 0x4 });
    expect(out[3].fault).toMatchObject({ name: "C_BAD_STREAMID", code: 0x2 });
  });

  it("reads the same snapshot from an ELF core", () => {
    const core = join(dir, "vmcore");
    writeFileSync(
      core,
      buildElfCore([
        { paddr: BASE, data: image() },
        { paddr: 0x80000, data: new Uint8Array(16), memsz: 0x1000 },
      ]),
    );
    const r = cli(
      ["translate", "--arch", "smmuv3", "--memory", core, "--regs", regs, "--requests", "-"],
      requests,
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.split("\n")[0]!)).toMatchObject({ pa: "0x80123" });
  });

  it("SMMUEN = 0 with GBPA.ABORT aborts every request", () => {
    const off = join(dir, "off.json");
    writeFileSync(off, JSON.stringify({ CR0: 0, GBPA: "0x100000" }));
    const r = cli(
      ["translate", "--arch", "smmuv3", ...mem(), "--regs", off, "--requests", "-"],
      '{"sid": 5, "iova": "0x1000"}',
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).fault).toMatchObject({ class: "blocked" });
  });

  it("explains the walk level by level", () => {
    const r = cli([
      "explain",
      "--arch",
      "smmuv3",
      ...mem(),
      "--regs",
      regs,
      "--sid",
      "5",
      "--iova",
      "0x40000123",
      "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    const addrs = j.steps.map((s: { address: string | null }) => s.address);
    expect(addrs).toEqual(
      expect.arrayContaining(["0x10140", "0x20000", "0x30000", "0x31008", "0x32000", "0x33000"]),
    );
    const text = cli([
      "explain",
      "--arch",
      "smmuv3",
      ...mem(),
      "--regs",
      regs,
      "--sid",
      "5",
      "--iova",
      "0x40000123",
    ]);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain("0x33000");
  });

  it("dumps the decoded stream table", () => {
    const r = cli(["dump", "--arch", "smmuv3", ...mem(), "--regs", regs, "--sid", "5", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("0x20000");
  });

  it("an unknown register name is exit 2", () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, '{"SMMU_CR0": 1}');
    const r = cli(["translate", "--arch", "smmuv3", ...mem(), "--regs", bad, "--requests", "-"], requests);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown register "SMMU_CR0" \(known: .*STRTAB_BASE/);
  });
});

/**
 * The built binary (packages/host/dist/cli/main.js), run as a user runs it. The root
 * `pnpm test` builds first; locally: `cd packages/host && npx tsc -b tsconfig.build.json`.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildElfCore } from "./cli-fixtures/elf.ts";

const BIN = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const FLAT = fileURLToPath(new URL("./cli-fixtures/flat-backend.mjs", import.meta.url));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: readonly string[], input?: string): Run {
  // Wide enough that tables print as tables (the CLI fits them to $COLUMNS, default 80).
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    input,
    timeout: 30_000,
    env: { ...process.env, COLUMNS: "300" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir = "";
const file = (name: string, content: string | Uint8Array): string => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

const mockScenario = (steps: unknown[]): string =>
  JSON.stringify({
    plugins: ["@iommu-kit/core/testing"],
    iommus: [{ name: "m0", backend: "mock" }],
    devices: [{ name: "dev", iommu: "m0", rid: 1, pasidBits: 8 }],
    steps,
  });

const goodSteps = [
  { op: "mem.write", pa: "0x100000", data: "cafef00d" },
  { op: "ioas.alloc", as: "ioas" },
  {
    op: "ioas.map",
    ioas: "ioas",
    iova: "0x10000",
    length: "0x1000",
    pa: "0x100000",
    expect: { iova: "0x10000" },
  },
  { op: "attach", device: "dev", target: "rid", pt: "ioas" },
  { op: "dma", device: "dev", iova: "0x10000", length: 4, expect: { pa: "0x100000", data: "CAFEF00D" } },
  { op: "dma", device: "dev", iova: "0x20000", length: 4, expect: { fault: "MOCK_TRANSLATION" } },
];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iommu-kit-cli-"));
});

describe("iommu-kit --help", () => {
  it("lists every command", () => {
    const r = cli(["--help"]);
    expect(r.status).toBe(0);
    for (const c of ["run", "translate", "explain", "dump", "caps"]) expect(r.stdout).toContain(`  ${c} `);
  });
  it.each([
    ["run", ["--json", "--plugin", "Exit status"]],
    ["translate", ["--arch", "--memory", "--regs", "--requests", "Exit status"]],
    ["explain", ["--device", "--sid", "--iova", "--pasid", "--json"]],
    ["dump", ["--device", "--sid", "--json"]],
    ["caps", ["--json"]],
  ])("%s --help documents its options", (cmd, words) => {
    const r = cli([cmd, "--help"]);
    expect(r.status).toBe(0);
    for (const w of words) expect(r.stdout).toContain(w);
  });
  it("translate --help lists the built-in backends' registers and defaults", () => {
    const r = cli(["translate", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/smmuv3:.* STRTAB_BASE=0x0/s);
    expect(r.stdout).toMatch(/vtd:.* RTADDR=0x0/s);
  });
  it("an unknown option is a usage error (exit 2)", () => {
    const r = cli(["run", "--bogus"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown option '--bogus'");
  });
});

describe("iommu-kit run (the default scenario)", () => {
  it("runs the built-in tour with every backend and intent, exit 0", () => {
    const r = cli(["run"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    for (const b of ["smmuv3", "vtd", "mdev-emulated"]) expect(r.stdout).toContain(b);
    expect(r.stdout).toMatch(/gpu\s+smmu0\s+smmuv3\s+0x20\s+rid,pasid,rid-all-pasids/);
    expect(r.stdout).toContain("F_TRANSLATION (0x10, translation)");
    expect(r.stdout).toMatch(/PASS <default scenario>: \d+ steps/);
  });
  it("--json: every step passes", () => {
    const r = cli(["run", "--json"]);
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(50);
    expect(lines.every((l) => l.pass === true && l.file === "<default scenario>")).toBe(true);
    const ops = new Set(lines.map((l) => l.op));
    for (const op of [
      "attach",
      "replace",
      "detach",
      "dma",
      "invalidate",
      "access.pin",
      "access.rw",
      "hw_info",
    ])
      expect(ops).toContain(op);
  });
  it("caps, explain and dump work on it", () => {
    const caps = cli(["caps", "--json"]);
    expect(caps.status).toBe(0);
    const rows = caps.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((x) => x.device)).toEqual(["nic", "gpu", "ssd", "accel", "pri", "vnic", "vssd"]);
    expect(rows.find((x) => x.device === "vssd")).toMatchObject({
      pasidAssignment: "backend",
      intents: ["emulated", "pasid"],
    });
    const ex = cli(["explain", "--device", "ssd", "--iova", "0x100000", "--pasid", "7", "--json"]);
    expect(ex.stderr).toBe("");
    expect(ex.status).toBe(0);
    expect(JSON.parse(ex.stdout).steps.length).toBeGreaterThan(2);
    const mdev = cli(["explain", "--device", "vssd", "--iova", "0x100000"]);
    expect(mdev.status).toBe(0);
    expect(mdev.stdout.split("\n")[0]).toBe(
      "vssd (through ssd pasid 1, vtd dmar0, rid 0x100) read iova 0x100000",
    );
    const dump = cli(["dump", "--device", "nic", "--json"]);
    expect(dump.status).toBe(0);
    expect(() => JSON.parse(dump.stdout)).not.toThrow();
  });

  it("caps and dump show the tour's vIOMMU and vDEVICE (after its steps ran)", () => {
    const caps = cli(["caps", "--json"]);
    expect(caps.status).toBe(0);
    const rows = caps.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.find((x) => x.device === "gpu").vdevice).toEqual({
      viommu: "gpu_viommu",
      type: "arm-smmuv3",
      virtId: 7,
      vendor: { vmid: 1, parent: 2 },
    });
    expect(rows.find((x) => x.device === "nic").vdevice).toBe(null);
    const text = cli(["caps"]);
    expect(text.stdout).toContain("vIOMMUs");
    expect(text.stdout).toMatch(
      /gpu_viommu +arm-smmuv3 +smmu0 +gpu_s2 +vmid=1 parent=2 +gpu=0x7 +gpu_events \(arm-smmuv3, 0\/8\)/,
    );
    const dump = cli(["dump", "--json"]);
    expect(dump.status).toBe(0);
    expect(JSON.parse(dump.stdout).vIOMMUs).toEqual([
      {
        viommu: "gpu_viommu",
        type: "arm-smmuv3",
        iommu: "smmu0",
        hwpt: "gpu_s2",
        vendor: { vmid: 1, parent: 2 },
        vdevices: [{ vdevice: "gpu_vdev", device: "gpu", virtId: 7 }],
        veventqs: [{ veventq: "gpu_events", type: "arm-smmuv3", depth: 8, pending: 0 }],
      },
    ]);
  });
});

describe("iommu-kit run", () => {
  it("exits 0 when every expectation holds, with capability table, steps and counters", () => {
    const r = cli(["run", file("good.json", mockScenario(goodSteps))]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Capabilities");
    expect(r.stdout).toMatch(/dev\s+m0\s+mock\s+0x1\s+rid,pasid/);
    expect(r.stdout).toContain("read iova 0x10000 -> pa 0x100000");
    expect(r.stdout).toContain("FAULT MOCK_TRANSLATION (0x1, translation)");
    expect(r.stdout).toContain("Cache counters");
    expect(r.stdout).toMatch(/PASS .*good\.json: 6 steps/);
  });

  it("exits 1 when an expectation fails, naming the file and step with expected vs actual", () => {
    const steps = [
      ...goodSteps.slice(0, 4),
      {
        op: "dma",
        device: "dev",
        iova: "0x10000",
        length: 4,
        name: "read back",
        expect: { data: "00000000" },
      },
    ];
    const f = file("bad.json", mockScenario(steps));
    const r = cli(["run", f]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("FAIL   5 read back");
    expect(r.stdout).toContain('data: expected "00000000", got "cafef00d"');
    expect(r.stdout).toMatch(/FAIL .*bad\.json: 1 of 5 steps failed \(step 5 read back\)/);
  });

  it("exits 1 when a step without expect throws", () => {
    const steps = [
      { op: "ioas.alloc", as: "i" },
      { op: "ioas.unmap", ioas: "i", iova: 0, length: 4096 },
    ];
    const r = cli(["run", file("throws.json", mockScenario(steps))]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("unexpected error ENOENT");
  });

  it("exits 2 for an invalid file, naming the field", () => {
    const steps = [
      { op: "ioas.alloc", as: "i" },
      { op: "ioas.map", ioas: "i", pa: 0 },
    ];
    const f = file("invalid.json", mockScenario(steps));
    const r = cli(["run", f]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(`iommu-kit: ${f}: /steps/1/length: is required`);
    expect(r.stdout).toBe("");
  });

  it("exits 2 for a file that is not JSON or YAML, and for a missing file", () => {
    expect(cli(["run", file("broken.json", "{ nope")]).status).toBe(2);
    const r = cli(["run", join(dir, "absent.json")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("cannot read scenario");
  });

  it("exits 2 for an unknown backend, pointing at it", () => {
    const doc = { iommus: [{ name: "x", backend: "no-such-iommu" }], steps: [] };
    const r = cli(["run", file("nobackend.json", JSON.stringify(doc))]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("/iommus/0/backend");
  });

  it("validates every file before running any: a later invalid file is exit 2 with no report", () => {
    const good = file("first.json", mockScenario(goodSteps));
    const bad = file(
      "second.json",
      mockScenario([{ op: "dma", device: "dev", iova: "0x0", access: "read", pasid: "x" }]),
    );
    const r = cli(["run", good, bad]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${bad}: /steps/0/pasid: must be a non-negative integer or a 0x hex string`);
  });

  it("checks a backend's config against its schema (exit 2, pointing into config)", () => {
    const doc = { iommus: [{ name: "s", backend: "smmuv3", config: { ssidBits: 99 } }], steps: [] };
    const r = cli(["run", file("badconfig.json", JSON.stringify(doc))]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("/iommus/0/config/ssidBits");
  });

  it("runs several files and fails when one fails", () => {
    const good = file("ok1.json", mockScenario(goodSteps));
    const bad = file("ko1.json", mockScenario([{ op: "ioas.alloc", as: "i", expect: { error: true } }]));
    const r = cli(["run", good, bad]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/PASS .*ok1\.json/);
    expect(r.stdout).toMatch(/FAIL .*ko1\.json: 1 of 1 steps failed/);
  });

  it("--stop-on-failure stops a file at its first failing step", () => {
    const steps = [
      { op: "ioas.alloc", as: "i", expect: { error: true } },
      { op: "ioas.alloc", as: "j" },
    ];
    const r = cli(["run", "--json", "--stop-on-failure", file("stop.json", mockScenario(steps))]);
    expect(r.status).toBe(1);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
  });

  it("accepts YAML", () => {
    const yaml = [
      "plugins: ['@iommu-kit/core/testing']",
      "iommus: [{name: m0, backend: mock}]",
      "devices: [{name: dev, iommu: m0, rid: 0x2}]",
      "steps:",
      "  - {op: hw_info, device: dev, expect: {type: none, maxPasidLog2: 0}}",
    ].join("\n");
    const r = cli(["run", file("s.yaml", yaml)]);
    expect(r.status).toBe(0);
  });

  it("--json prints one JSON line per step", () => {
    const f = file("json.json", mockScenario(goodSteps));
    const r = cli(["run", "--json", f]);
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(goodSteps.length);
    expect(lines[4]).toEqual({
      file: f,
      step: 5,
      name: "dma device=dev iova=0x10000",
      op: "dma",
      result: { pa: "0x100000", data: "cafef00d" },
      expect: { pa: "0x100000", data: "CAFEF00D" },
      pass: true,
    });
    expect(lines[5].fault).toMatchObject({
      class: "translation",
      name: "MOCK_TRANSLATION",
      code: 1,
      device: "dev",
    });
  });
});

describe("iommu-kit translate", () => {
  let regs = "";
  let raw = "";
  let elf = "";
  beforeAll(() => {
    // Table at 0x8000: page 1 -> 0x42000 rw, page 2 -> 0x43000 read-only.
    const table = new Uint8Array(0x1000);
    const v = new DataView(table.buffer);
    v.setBigUint64(8, 0x42000n | 3n, true);
    v.setBigUint64(16, 0x43000n | 1n, true);
    raw = file("table.bin", table);
    elf = file(
      "core.elf",
      buildElfCore([
        { paddr: 0x8000, data: table },
        { paddr: 0x40000, data: new Uint8Array(0x10), memsz: 0x10000 },
      ]),
    );
    regs = file("regs.json", JSON.stringify({ TABLE: "0x8000" }));
  });
  const requests = [
    '{"sid": 3, "pasid": null, "iova": "0x1234", "access": "read", "priv": false}',
    '{"sid": 3, "iova": "0x2000", "access": "write"}',
    '{"sid": 3, "iova": "0x5000"}',
  ].join("\n");
  const expected = [
    { sid: 3, pasid: null, iova: "0x1234", access: "read", priv: false, pa: "0x42234", perm: "rw" },
    {
      sid: 3,
      iova: "0x2000",
      access: "write",
      fault: { class: "permission", name: "READ_ONLY", code: 2, recorded: true, vendor: "flat", fields: {} },
    },
    {
      sid: 3,
      iova: "0x5000",
      fault: {
        class: "translation",
        name: "NOT_PRESENT",
        code: 1,
        recorded: true,
        vendor: "flat",
        fields: {},
      },
    },
  ];

  it("translates JSONL requests against a raw image at a base", () => {
    const r = cli([
      "translate",
      "--plugin",
      FLAT,
      "--arch",
      "flat",
      "--memory",
      `${raw}@0x8000`,
      "--regs",
      regs,
      "--requests",
      file("req.jsonl", requests),
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual(expected);
  });

  it("reads an ELF core's PT_LOAD segments and requests from stdin", () => {
    const r = cli(
      ["translate", "--plugin", FLAT, "--arch", "flat", "--memory", elf, "--regs", regs, "--requests", "-"],
      requests,
    );
    expect(r.status).toBe(0);
    expect(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual(expected);
  });

  it("a table outside the memory images is the backend's walk fault, not a crash", () => {
    const r = cli(
      [
        "translate",
        "--plugin",
        FLAT,
        "--arch",
        "flat",
        "--memory",
        `${raw}@0x100000`,
        "--regs",
        regs,
        "--requests",
        "-",
      ],
      requests,
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.split("\n")[0]!).fault).toEqual({
      class: "walk-abort",
      name: "WALK_EABT",
      code: 3,
      recorded: true,
      vendor: "flat",
      fields: {},
    });
  });

  it("--list-registers prints a backend's register names and defaults", () => {
    const r = cli(["translate", "--plugin", FLAT, "--arch", "flat", "--list-registers"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("  flat:\n    TABLE=0x0\n    ENABLE=0x1\n");
  });

  it("missing registers take the defaults", () => {
    const r = cli(
      ["translate", "--plugin", FLAT, "--arch", "flat", "--memory", `${raw}@0`, "--requests", "-"],
      '{"sid": 0, "iova": "0x1000"}',
    );
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ sid: 0, iova: "0x1000", pa: "0x42000", perm: "rw" });
  });

  it.each([
    [["--regs", "unknown-reg"], /unknown register "BOGUS" \(known: TABLE, ENABLE\)/],
    [["--requests-bad"], /line 2: iova must be/],
    [["--memory-bad"], /base "0xq" is not hex/],
    [["--arch-bad"], /no backend named nope|no-such|nope/],
    [["--no-requests"], /--requests FILE\|- is required/],
  ])("bad input exits 2 with one line: %s", (kind, message) => {
    const args = [
      "translate",
      "--plugin",
      FLAT,
      "--arch",
      "flat",
      "--memory",
      `${raw}@0x8000`,
      "--regs",
      regs,
      "--requests",
      "-",
    ];
    let input = requests;
    if (kind[0] === "--regs") args[args.indexOf(regs)] = file("bad-regs.json", '{"BOGUS": 1}');
    if (kind[0] === "--requests-bad") input = '{"sid": 1, "iova": "0x0"}\n{"sid": 1, "iova": "x"}';
    if (kind[0] === "--memory-bad") args[args.indexOf(`${raw}@0x8000`)] = `${raw}@0xq`;
    if (kind[0] === "--arch-bad") args[args.indexOf("flat")] = "nope";
    if (kind[0] === "--no-requests") args.splice(args.indexOf("--requests"), 2);
    const r = cli(args, input);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stdout).toBe("");
  });
});

describe("iommu-kit explain / dump / caps", () => {
  it("explains a snapshot walk level by level (and as JSON)", () => {
    const table = new Uint8Array(0x1000);
    new DataView(table.buffer).setBigUint64(8, 0x42000n | 3n, true);
    const raw = file("t2.bin", table);
    const regs = file("r2.json", '{"TABLE": "0x8000"}');
    const args = [
      "explain",
      "--plugin",
      FLAT,
      "--arch",
      "flat",
      "--memory",
      `${raw}@0x8000`,
      "--regs",
      regs,
      "--sid",
      "0",
      "--iova",
      "0x1abc",
    ];
    const r = cli(args);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/flat table\s+0x8008\s+1\s+0x0000000000042003\s+page/);
    expect(r.stdout).toContain("V=true");
    const j = cli([...args, "--json"]);
    expect(JSON.parse(j.stdout)).toMatchObject({
      iova: "0x1abc",
      pasid: null,
      steps: [{ what: "flat table", address: "0x8008", index: 1 }],
    });
    expect(cli(args.filter((a) => a !== "--sid" && a !== "0")).status).toBe(2);
  });

  it("dumps a snapshot as JSON and as text", () => {
    const raw = file("t3.bin", new Uint8Array(16));
    const args = [
      "dump",
      "--plugin",
      FLAT,
      "--arch",
      "flat",
      "--memory",
      `${raw}@0`,
      "--regs",
      file("r3.json", '{"TABLE": 4096}'),
    ];
    expect(JSON.parse(cli([...args, "--json"]).stdout)).toEqual({ table: "0x1000", rid: null });
    expect(cli([...args, "--sid", "7"]).stdout).toBe('table: "0x1000"\nrid: 7\n');
  });

  it("explains and dumps a scenario device after its steps", () => {
    const f = file("ex.json", mockScenario(goodSteps));
    const r = cli(["explain", f, "--device", "dev", "--iova", "0x10000"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("dev (mock m0, rid 0x1) read iova 0x10000");
    expect(r.stdout).toMatch(/L0 table .* leaf 2\^12/);
    const d = cli(["dump", f, "--device", "dev", "--json"]);
    expect(d.status).toBe(0);
    expect(JSON.parse(d.stdout)["1"].rid).toMatchObject({ type: "paging" });
    expect(cli(["explain", f, "--device", "nope", "--iova", "0"]).status).toBe(2);
  });

  it("prints the capability table of a scenario", () => {
    const f = file("caps.json", mockScenario([]));
    const r = cli(["caps", f]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^device\s+iommu\s+backend/);
    expect(r.stdout).toMatch(/dev\s+m0\s+mock\s+0x1\s+rid,pasid\s+8 bits/);
    const j = cli(["caps", f, "--json"]);
    expect(JSON.parse(j.stdout)).toMatchObject({
      device: "dev",
      backend: "mock",
      intents: ["rid", "pasid"],
      maxPasidLog2: 8,
    });
  });
});

/**
 * The exit-code contract for bad input, table-driven: every row runs the built CLI
 * (packages/host/dist/cli/main.js) and must exit 2 with one error line that names the
 * place (file and JSON pointer or line, or the option) and the field, within 1 s of CPU
 * time and 200 MB. The child runs with `--max-old-space-size=200`, so an allocation
 * that is not bounded first is a V8 abort (not exit 2, no measurement written).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildElfCore } from "./cli-fixtures/elf.ts";

const BIN = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const MEASURE = fileURLToPath(new URL("./cli-fixtures/measure.mjs", import.meta.url));
const FLAT = fileURLToPath(new URL("./cli-fixtures/flat-backend.mjs", import.meta.url));
const SNAPSHOTS = fileURLToPath(new URL("../../../fixtures/snapshots/", import.meta.url));
const VTD = join(SNAPSHOTS, "vtd-legacy-qemu72-linux61");

let dir = "";
const at = (name: string): string => join(dir, name);

const mock = (extra: Record<string, unknown>): string =>
  JSON.stringify({
    plugins: ["@iommu-kit/core/testing"],
    iommus: [{ name: "m0", backend: "mock" }],
    devices: [{ name: "dev", iommu: "m0", rid: 1, pasidBits: 8 }],
    steps: [],
    ...extra,
  });
const page = (pa: string, hex = "00".repeat(4096)): string => JSON.stringify({ pa, hex });

/** The files the rows use, written once into a temp folder. */
function files(): Record<string, string | Uint8Array> {
  const table = new Uint8Array(0x1000);
  const elf = buildElfCore([{ paddr: 0x8000, data: table }]);
  const regset = (unit: string): string =>
    [
      `IOMMU: ${unit} Register Base Address: fed90000`,
      "Name\t\t\tOffset\t\tContents",
      "VER             \t0x00\t\t0x0000000000000010",
      "RTADDR          \t0x20\t\t0x0000000002f36000",
      "",
    ].join("\n");
  return {
    "rid.json": mock({ devices: [{ name: "dev", iommu: "m0", rid: "0x10000" }] }),
    "rid32.json": mock({ devices: [{ name: "dev", iommu: "m0", rid: "0x100000000" }] }),
    "ram-base.json": mock({ memory: { ram: [{ base: "0x123", size: "0x100000" }] } }),
    "ram-size.json": mock({ memory: { ram: [{ base: 0, size: "0x1001" }] } }),
    "memread.json": mock({ steps: [{ op: "mem.read", pa: 0, length: "0xffffffff" }] }),
    "pa53.json": mock({ steps: [{ op: "mem.read", pa: "0x20000000000000", length: 4 }] }),
    "dirty.json": mock({
      steps: [
        { op: "ioas.alloc", as: "a" },
        { op: "hwpt.alloc", device: "dev", pt: "a", flags: ["dirty_tracking"], as: "h" },
        { op: "dirty.read", hwpt: "h", iova: 0, length: "0x10000000000000" },
      ],
    }),
    "dirty53.json": mock({
      steps: [
        { op: "ioas.alloc", as: "a" },
        { op: "hwpt.alloc", device: "dev", pt: "a", flags: ["dirty_tracking"], as: "h" },
        { op: "dirty.read", hwpt: "h", iova: 0, length: "0xffffffffffff0000" },
      ],
    }),
    "dmaread.json": mock({ steps: [{ op: "dma", device: "dev", iova: 0, length: "0x40000000" }] }),
    "deep.json": `{"steps": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
    "deep.yaml": `steps: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`,
    "deep-block.yaml": `steps: []\nname:\n${Array.from({ length: 80 }, (_, i) => `${"  ".repeat(i + 1)}a:`).join("\n")} 1\n`,
    "unknown-field.json": mock({ steps: [{ op: "mem.read", pa: 0, length: 4, bogus: 1 }] }),
    "not-json.json": "{ steps: [",
    "no-backend.json": JSON.stringify({ iommus: [{ name: "x", backend: "nosuch" }], steps: [] }),
    "thrownull.mjs": 'export const n = { name: "thrownull", create() { throw null; } };',
    "thrownull.json": JSON.stringify({
      plugins: ["./thrownull.mjs"],
      iommus: [{ name: "u", backend: "thrownull" }],
      steps: [],
    }),
    "missing-plugin.json": JSON.stringify({ plugins: ["./gone.mjs"], steps: [] }),
    "syntax.mjs": "export const = 1;",
    "plugin.ts": "export const x: number = 1;",
    "noexport.mjs": "export const x = 1;",
    "baddep.mjs": 'import "iommu-kit-no-such-dependency"; export const x = 1;',
    "flat-regs.json": '{"TABLE": "0x8000"}',
    "bogus-regs.json": '{"TABLE": "0x8000", "BOGUS": 1}',
    "deep-regs.json": `{"TABLE": ${"[".repeat(1000)}${"]".repeat(1000)}}`,
    "table.bin": table,
    "cut.elf": elf.subarray(0, elf.length - 100),
    "pages.jsonl": `${page("0x8000")}\n`,
    "cut.jsonl": `${page("0x8000")}\n${page("0x9000").slice(0, 3000)}`,
    "short.jsonl": `${page("0x8000", "00".repeat(50))}\n`,
    "misaligned.jsonl": `${page("0x8001")}\n`,
    "two-units.txt": regset("dmar0") + regset("dmar1"),
    "bad-regset.txt": `${regset("dmar0")}garbage here\n`,
    "vtd-regs.json": readFileSync(join(VTD, "regs.json"), "utf8"),
  };
}

interface Row {
  /** Row name. */
  readonly name: string;
  readonly args: readonly string[];
  readonly stdin?: string;
  /** The error line: place and field. */
  readonly message: RegExp;
}

const flat = ["--plugin", FLAT, "--arch", "flat"];
const flatSnap = (): string[] => [
  ...flat,
  "--memory",
  `${at("table.bin")}@0x8000`,
  "--regs",
  at("flat-regs.json"),
];
const vtdSnap = (): string[] => ["--snapshot", VTD];

const rows = (): Row[] => [
  // run: scenario files
  {
    name: "run: rid the backend refuses",
    args: ["run", at("rid.json")],
    message: /rid\.json: \/devices\/0\/rid: EINVAL: .*16-bit/,
  },
  {
    name: "run: rid wider than 32 bits",
    args: ["run", at("rid32.json")],
    message: /rid32\.json: \/devices\/0\/rid: 0x100000000 is wider than 32 bits/,
  },
  {
    name: "run: misaligned RAM base",
    args: ["run", at("ram-base.json")],
    message: /ram-base\.json: \/memory\/ram\/0\/base: 0x123 is not 4 KiB aligned/,
  },
  {
    name: "run: misaligned RAM size",
    args: ["run", at("ram-size.json")],
    message: /ram-size\.json: \/memory\/ram\/0\/size: 0x1001 is not 4 KiB aligned/,
  },
  {
    name: "run: mem.read length 0xffffffff",
    args: ["run", at("memread.json")],
    message: /memread\.json: \/steps\/0\/length: E2BIG: 0xffffffff is over the limit 0x1000000/,
  },
  {
    name: "run: dma read of 1 GiB",
    args: ["run", at("dmaread.json")],
    message: /dmaread\.json: \/steps\/0\/length: E2BIG: 0x40000000 is over the limit 0x1000000/,
  },
  {
    name: "run: dirty.read bitmap too large",
    args: ["run", at("dirty.json")],
    message:
      /dirty\.json: \/steps\/2\/length: E2BIG: .* over the limit 0x8000000 \(pages of a dirty bitmap\)/,
  },
  {
    name: "run: dirty.read length above 2^53",
    args: ["run", at("dirty53.json")],
    message: /dirty53\.json: \/steps\/2\/length: 0xffffffffffff0000 is at or above 2\^53/,
  },
  {
    name: "run: pa above 2^53",
    args: ["run", at("pa53.json")],
    message: /pa53\.json: \/steps\/0\/pa: 0x20000000000000 is at or above 2\^53/,
  },
  {
    name: "run: 100,000-deep JSON",
    args: ["run", at("deep.json")],
    message: /deep\.json: \/: line 1 column \d+: nested deeper than 64 levels/,
  },
  {
    name: "run: 100,000-deep YAML flow",
    args: ["run", at("deep.yaml")],
    message: /deep\.yaml: \/: line 1 column \d+: nested deeper than 64 levels/,
  },
  {
    name: "run: deep YAML block",
    args: ["run", at("deep-block.yaml")],
    message: /deep-block\.yaml: \/name(\/a)+: nested deeper than 64 levels/,
  },
  {
    name: "run: unknown step field",
    args: ["run", at("unknown-field.json")],
    message: /unknown-field\.json: \/steps\/0\/bogus: is not a known field here/,
  },
  {
    name: "run: not JSON",
    args: ["run", at("not-json.json")],
    message: /not-json\.json: \/: not valid JSON/,
  },
  {
    name: "run: missing file",
    args: ["run", at("gone.json")],
    message: /cannot read scenario .*gone\.json: ENOENT/,
  },
  {
    name: "run: unknown backend lists the built-ins",
    args: ["run", at("no-backend.json")],
    message:
      /no-backend\.json: \/iommus\/0\/backend: unknown backend "nosuch" .*available: .*mdev-emulated, smmuv3, vtd/,
  },
  {
    name: "run: create() throws null",
    args: ["run", at("thrownull.json")],
    message: /thrownull\.json: \/iommus\/0: backend thrownull: threw null/,
  },
  {
    name: "run: scenario plugin not found",
    args: ["run", at("missing-plugin.json")],
    message:
      /missing-plugin\.json: \/plugins\/0: cannot load plugin \.\/gone\.mjs: ENOENT: no file .*gone\.mjs/,
  },
  {
    name: "run: --plugin not found",
    args: ["run", "--plugin", at("nope.mjs")],
    message: /cannot load plugin .*nope\.mjs: ENOENT: no file/,
  },
  {
    name: "run: --plugin syntax error",
    args: ["run", "--plugin", at("syntax.mjs")],
    message: /cannot load plugin .*syntax\.mjs: syntax error in .*syntax\.mjs/,
  },
  {
    name: "run: --plugin .ts without a loader",
    args: ["run", "--plugin", at("plugin.ts")],
    message: /plugin\.ts is TypeScript.*build it to JavaScript, or run node with a TypeScript loader/,
  },
  {
    name: "run: --plugin without a factory export",
    args: ["run", "--plugin", at("noexport.mjs")],
    message: /noexport\.mjs: EINVAL: it exports no backend factory .*it exports: x/,
  },
  {
    name: "run: --plugin whose import is missing",
    args: ["run", "--plugin", at("baddep.mjs")],
    message: /baddep\.mjs: a module it imports is missing: iommu-kit-no-such-dependency/,
  },
  {
    name: "run: --plugin package not installed",
    args: ["run", "--plugin", "iommu-kit-no-such-package"],
    message: /cannot load plugin iommu-kit-no-such-package: no package .* is installed/,
  },
  { name: "run: unknown option", args: ["run", "--bogus"], message: /unknown option '--bogus'/ },
  // caps
  {
    name: "caps: rid the backend refuses",
    args: ["caps", at("rid.json")],
    message: /rid\.json: \/devices\/0\/rid: EINVAL/,
  },
  {
    name: "caps: deep JSON",
    args: ["caps", at("deep.json")],
    message: /deep\.json: \/: line 1 column \d+: nested deeper/,
  },
  {
    name: "caps: unknown backend",
    args: ["caps", at("no-backend.json")],
    message: /\/iommus\/0\/backend: unknown backend "nosuch"/,
  },
  {
    name: "caps: misaligned RAM",
    args: ["caps", at("ram-base.json")],
    message: /\/memory\/ram\/0\/base: 0x123 is not 4 KiB aligned/,
  },
  // explain
  {
    name: "explain: --pasid wider than 20 bits",
    args: ["explain", "--device", "ssd", "--iova", "0", "--pasid", "99999999"],
    message: /--pasid 99999999: must be below 0x100000/,
  },
  {
    name: "explain: --iova not a number",
    args: ["explain", "--device", "ssd", "--iova", "zz"],
    message: /--iova "zz" is not hex/,
  },
  {
    name: "explain: --access unknown",
    args: ["explain", "--device", "ssd", "--iova", "0", "--access", "fly"],
    message: /--access must be read, write or exec, got "fly"/,
  },
  {
    name: "explain: no such device",
    args: ["explain", "--device", "nope", "--iova", "0"],
    message: /--device nope: no device of that name/,
  },
  {
    name: "explain: --sid with a scenario",
    args: ["explain", "--sid", "1", "--iova", "0"],
    message: /--sid is for snapshots/,
  },
  {
    name: "explain: snapshot --sid the backend refuses",
    args: ["explain", ...vtdSnap(), "--sid", "99999999", "--iova", "0"],
    message: /^iommu-kit: --sid 99999999: EINVAL: source-id 99999999 is not a 16-bit number$/,
  },
  {
    name: "explain: snapshot --sid wider than 32 bits",
    args: ["explain", ...vtdSnap(), "--sid", "0x100000000", "--iova", "0"],
    message: /--sid 0x100000000: must be below 0x100000000/,
  },
  {
    name: "explain: snapshot --pasid wider than 20 bits",
    args: ["explain", ...vtdSnap(), "--sid", "16", "--pasid", "0x100000", "--iova", "0"],
    message: /--pasid 0x100000: must be below 0x100000/,
  },
  // dump
  {
    name: "dump: --snapshot not a folder",
    args: ["dump", "--snapshot", at("nowhere")],
    message: /--snapshot .*nowhere: ENOENT: not a folder/,
  },
  {
    name: "dump: JSONL page list given a base",
    args: ["dump", ...flat, "--memory", `${at("pages.jsonl")}@0x1000`, "--regs", at("flat-regs.json")],
    message: /pages\.jsonl is a JSONL page list .*drop @BASE/,
  },
  {
    name: "dump: truncated page list",
    args: ["dump", ...flat, "--memory", at("cut.jsonl"), "--regs", at("flat-regs.json")],
    message: /cut\.jsonl line 2: truncated/,
  },
  {
    name: "dump: short page",
    args: ["dump", ...flat, "--memory", at("short.jsonl"), "--regs", at("flat-regs.json")],
    message: /short\.jsonl line 1: hex has 100 digits, a 4 KiB page needs 8192/,
  },
  {
    name: "dump: misaligned page",
    args: ["dump", ...flat, "--memory", at("misaligned.jsonl"), "--regs", at("flat-regs.json")],
    message: /misaligned\.jsonl line 1: pa 0x8001 is not 4 KiB aligned/,
  },
  {
    name: "dump: unknown --arch",
    args: ["dump", "--arch", "nosuch", "--memory", at("table.bin")],
    message: /unknown backend "nosuch" .*available: .*smmuv3, vtd/,
  },
  {
    name: "dump: truncated ELF core",
    args: ["dump", ...flat, "--memory", at("cut.elf"), "--regs", at("flat-regs.json")],
    message: /cut\.elf: program header 1 \(PT_LOAD\) data is past the end of the file: truncated image/,
  },
  // translate
  {
    name: "translate: sid the backend refuses",
    args: ["translate", ...vtdSnap(), "--requests", "-"],
    stdin: '{"sid": 99999999, "iova": "0x1000"}',
    message: /stdin line 1: sid: EINVAL: source-id 99999999 is not a 16-bit number/,
  },
  {
    name: "translate: rid wider than 32 bits",
    args: ["translate", ...flatSnap(), "--requests", "-"],
    stdin: '{"rid": "0x100000000", "iova": "0"}',
    message: /stdin line 1: rid 0x100000000 is wider than 32 bits/,
  },
  {
    name: "translate: pasid wider than 20 bits",
    args: ["translate", ...flatSnap(), "--requests", "-"],
    stdin: '\n{"sid": 0, "pasid": 1048576, "iova": "0"}',
    message: /stdin line 2: pasid 1048576 is wider than 20 bits/,
  },
  {
    name: "translate: expected field without --check",
    args: ["translate", ...flatSnap(), "--requests", "-"],
    stdin: '{"sid": 0, "iova": "0", "pa": "0x0"}',
    message: /stdin line 1: unknown field "pa" \(expected fields need --snapshot or --check\)/,
  },
  {
    name: "translate: --check with a bad expected field",
    args: ["translate", ...flatSnap(), "--check", "--requests", "-"],
    stdin: '{"sid": 0, "iova": "0", "fault": "yes"}',
    message: /stdin line 1: fault must be true or false/,
  },
  {
    name: "translate: request not JSON",
    args: ["translate", ...flatSnap(), "--requests", "-"],
    stdin: '{"sid": 0, "iova": "0"}\n{oops',
    message: /stdin line 2: not valid JSON/,
  },
  {
    name: "translate: iova not a number",
    args: ["translate", ...flatSnap(), "--requests", "-"],
    stdin: '{"sid": 0, "iova": "nope"}',
    message: /stdin line 1: iova must be a 0x hex string/,
  },
  {
    name: "translate: no --requests",
    args: ["translate", ...flatSnap()],
    message: /--requests FILE\|- is required/,
  },
  {
    name: "translate: --ram not BASE+SIZE",
    args: ["translate", ...flat, "--ram", "0x1000", "--requests", "-"],
    message: /--ram 0x1000: expected BASE\+SIZE/,
  },
  {
    name: "translate: --ram misaligned",
    args: ["translate", ...flat, "--ram", "0x1000+0x10", "--requests", "-"],
    message: /--ram 0x1000\+0x10: base and size must be 4 KiB aligned/,
  },
  {
    name: "translate: unknown register",
    args: [
      "translate",
      ...flat,
      "--memory",
      `${at("table.bin")}@0x8000`,
      "--regs",
      at("bogus-regs.json"),
      "--requests",
      "-",
    ],
    message: /bogus-regs\.json: \/BOGUS: unknown register "BOGUS" \(known: TABLE, ENABLE\)/,
  },
  {
    name: "translate: deep register JSON",
    args: [
      "translate",
      ...flat,
      "--memory",
      `${at("table.bin")}@0x8000`,
      "--regs",
      at("deep-regs.json"),
      "--requests",
      "-",
    ],
    message: /deep-regs\.json: line 1 column \d+: nested deeper than 64 levels/,
  },
  {
    name: "translate: regset with two units",
    args: [
      "translate",
      "--arch",
      "vtd",
      "--memory",
      join(VTD, "memory.jsonl"),
      "--regs",
      at("two-units.txt"),
      "--requests",
      "-",
    ],
    message: /two-units\.txt: 2 units \(dmar0, dmar1\): choose one with --unit NAME/,
  },
  {
    name: "translate: regset bad line",
    args: [
      "translate",
      "--arch",
      "vtd",
      "--memory",
      join(VTD, "memory.jsonl"),
      "--regs",
      at("bad-regset.txt"),
      "--requests",
      "-",
    ],
    message: /bad-regset\.txt line 5: expected "NAME\\t0xOFFSET\\t\\t0xVALUE"/,
  },
  {
    name: "translate: --unit with JSON registers",
    args: [
      "translate",
      "--arch",
      "vtd",
      "--memory",
      join(VTD, "memory.jsonl"),
      "--regs",
      at("vtd-regs.json"),
      "--unit",
      "dmar0",
      "--requests",
      "-",
    ],
    message: /--unit dmar0: .*vtd-regs\.json is not debugfs iommu_regset text/,
  },
  {
    name: "translate: --strict with a pointer outside the images",
    args: ["translate", ...vtdSnap(), "--strict"],
    message: /--strict: 2 table pointer\(s\) outside every memory image/,
  },
];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iommu-kit-bad-"));
  for (const [n, c] of Object.entries(files())) writeFileSync(join(dir, n), c);
  return () => rmSync(dir, { recursive: true, force: true });
});

describe("bad input: exit 2, one line naming the place, under 1 s of CPU and 200 MB", () => {
  it("has at least 40 rows across run, translate, explain, dump and caps", () => {
    const r = rows();
    expect(r.length).toBeGreaterThanOrEqual(40);
    for (const c of ["run", "translate", "explain", "dump", "caps"])
      expect(r.filter((x) => x.args[0] === c).length).toBeGreaterThanOrEqual(4);
  });

  it.each(rows().map((r, i) => [r.name, i] as const))("%s", (_name, i) => {
    const row = rows()[i]!;
    const measure = join(dir, `measure-${i}.json`);
    const r = spawnSync(
      process.execPath,
      ["--max-old-space-size=200", "--import", MEASURE, BIN, ...row.args],
      {
        encoding: "utf8",
        input: row.stdin ?? "",
        cwd: dir,
        timeout: 20_000,
        env: { ...process.env, IOMMU_KIT_MEASURE: measure },
      },
    );
    const errors = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("iommu-kit: warning:"));
    expect({ status: r.status, signal: r.signal, stderr: errors }).toMatchObject({ status: 2, signal: null });
    // Commander prints its own usage hint after the error line.
    expect(errors.filter((l) => !l.startsWith("(run with --help"))).toHaveLength(1);
    expect(errors[0]).toMatch(row.message);
    expect(r.stdout).toBe("");
    const m = JSON.parse(readFileSync(measure, "utf8")) as { cpuMs: number; maxRssKb: number };
    expect(m.cpuMs).toBeLessThan(1000);
    expect(m.maxRssKb).toBeLessThan(200 * 1024);
  });
});

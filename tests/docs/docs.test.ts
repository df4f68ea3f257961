/**
 * docs/writing-a-backend.md, run as written. The guide's code blocks say what they are:
 * `from=FILE` an excerpt that must appear verbatim (modulo indentation) in the example's
 * FILE; `file=FILE` a whole file, equal to the example's when it has one, else written next
 * to it; `sh run` commands run line by line in a copy of examples/mock-backend whose
 * node_modules link the workspace's built packages (a trailing `# prints: TEXT` is the exact
 * output). The copy is type-checked with the example's tsconfig (checkJs), and TypeScript
 * `file=` blocks with it too.
 */

import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CodeBlock, codeBlocks } from "../packaging/markdown.ts";

const root = new URL("../..", import.meta.url).pathname;
const example = join(root, "examples", "mock-backend");
const guide = readFileSync(join(root, "docs", "writing-a-backend.md"), "utf8");
const blocks = codeBlocks(guide);
const work = mkdtempSync(join(tmpdir(), "iommu-kit-docs-"));
const dir = join(work, "example");
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
const PACKAGES = ["core", "smmuv3", "vtd", "mdev-emulated", "host"];

const attr = (b: CodeBlock, key: string): string | undefined =>
  new RegExp(`(?:^|\\s)${key}=(\\S+)`).exec(b.info)?.[1];
const where = (b: CodeBlock): string => `docs/writing-a-backend.md:${b.line} (${b.info})`;
const trimmed = (code: string): string[] =>
  code
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, {
    cwd: dir,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, PATH: `${join(dir, "node_modules", ".bin")}:${process.env.PATH}` },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(() => {
  for (const pkg of PACKAGES) {
    if (!existsSync(join(root, "packages", pkg, "dist", "index.js")))
      throw new Error(`packages/${pkg} is not built: run \`pnpm run build\` first`);
  }
  cpSync(example, dir, { recursive: true, filter: (src) => !src.includes("node_modules") });
  const nm = join(dir, "node_modules");
  mkdirSync(join(nm, "@iommu-kit"), { recursive: true });
  mkdirSync(join(nm, "@types"));
  mkdirSync(join(nm, ".bin"));
  for (const pkg of PACKAGES) symlinkSync(join(root, "packages", pkg), join(nm, "@iommu-kit", pkg));
  symlinkSync(join(root, "node_modules", "@types", "node"), join(nm, "@types", "node"));
  symlinkSync(join(root, "node_modules", "tsx"), join(nm, "tsx"));
  symlinkSync(join(root, "packages", "host", "bin", "iommu-kit.js"), join(nm, ".bin", "iommu-kit"));
  for (const b of blocks) {
    const file = attr(b, "file");
    if (file !== undefined && !existsSync(join(example, file))) writeFileSync(join(dir, file), b.code);
  }
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("docs/writing-a-backend.md", () => {
  it("every code block is an excerpt, a file, a command run, or a plain install command", () => {
    expect(blocks.length).toBeGreaterThan(10);
    for (const b of blocks) {
      const kinds = [attr(b, "from"), attr(b, "file"), b.info === "sh run" ? "run" : undefined];
      const known = kinds.filter((k) => k !== undefined).length === 1;
      const install =
        b.lang === "sh" && trimmed(b.code).every((l) => /^(npm install|npx -p typescript tsc)/.test(l));
      expect(known || install, where(b)).toBe(true);
    }
  });

  it("the excerpts appear verbatim in the example", () => {
    const excerpts = blocks.filter((b) => attr(b, "from") !== undefined);
    expect(excerpts.length).toBeGreaterThanOrEqual(5);
    for (const b of excerpts) {
      const source = trimmed(readFileSync(join(example, attr(b, "from")!), "utf8")).join("\n");
      expect(source, where(b)).toContain(trimmed(b.code).join("\n"));
    }
  });

  it("the whole files are the example's own files", () => {
    for (const b of blocks.filter((b) => attr(b, "file") !== undefined)) {
      const file = join(example, attr(b, "file")!);
      if (existsSync(file)) expect(b.code, where(b)).toBe(readFileSync(file, "utf8"));
    }
  });

  it("the example and the guide's files type-check (checkJs, strict)", () => {
    const ts = blocks
      .filter((b) => b.lang === "ts" && attr(b, "file") !== undefined)
      .map((b) => attr(b, "file")!);
    expect(ts.length).toBeGreaterThan(0);
    writeFileSync(
      join(dir, "tsconfig.docs.json"),
      JSON.stringify({ extends: "./tsconfig.json", include: ["src", "test", "*.js", ...ts] }),
    );
    const r = run("node", [tsc, "-p", "tsconfig.docs.json"]);
    expect(r.out).toBe("");
    expect(r.status).toBe(0);
    // The check is real: a type error in a checked file fails it.
    writeFileSync(
      join(dir, "bad.js"),
      '// @ts-check\n/** @type {number} */\nexport const n = "not a number";\n',
    );
    expect(run("node", [tsc, "-p", "tsconfig.docs.json"]).status).not.toBe(0);
    rmSync(join(dir, "bad.js"));
  });

  for (const b of blocks.filter((b) => b.info === "sh run")) {
    it(`runs ${where(b)}`, () => {
      for (const line of b.code.split("\n")) {
        if (line.trim() === "" || line.trim().startsWith("#")) continue;
        const [command, prints] = line.split(/\s+# prints: /);
        const r = run("bash", ["-c", command!]);
        expect(r.status, `${command}\n${r.out}`).toBe(0);
        if (prints !== undefined) expect(r.out.trim(), command).toBe(prints.trim());
      }
    });
  }

  it("a TypeScript plugin without a loader is refused, exit 2 naming it", () => {
    const r = run("node", ["node_modules/.bin/iommu-kit", "run", "--plugin", "./plugin.ts", "scenario.json"]);
    expect(r.status).toBe(2);
    expect(r.out).toMatch(
      /^iommu-kit: cannot load plugin \.\/plugin\.ts: .*plugin\.ts is TypeScript, which node cannot import without a loader: build it to JavaScript, or run node with a TypeScript loader/,
    );
  });
});

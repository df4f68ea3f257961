/**
 * The import graph of the workspace's sources, for the architecture checks: every
 * static `import` / `import type` / `export ... from` specifier of each .ts file under
 * `packages/<pkg>/src`, read from TypeScript's own parse (so specifiers in comments
 * and strings are not counted), relative ones resolved to files. Dynamic `import()`
 * is left out: it creates no load-time edge.
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

/** One source file and what it imports. */
export interface SourceFile {
  /** Path relative to the repository root, with `/` separators. */
  readonly path: string;
  /** The package folder name (`packages/<pkg>/src/...`). */
  readonly pkg: string;
  readonly lines: number;
  /** Relative imports resolved to repository paths (only those that name a file that exists). */
  readonly local: readonly string[];
  /** Bare specifiers (`@iommu-kit/core/driver`, `node:fs`, `ajv`). */
  readonly bare: readonly string[];
}

/** The repository root (this file is tests/architecture/graph.ts). */
export const ROOT: string = resolve(dirname(new URL(import.meta.url).pathname), "../..");

/** Every .ts file below `dir` (absolute), sorted. */
function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/**
 * Static import and re-export specifiers of TypeScript source `text`, in order: the
 * top-level `import ... from`, `import type`, side-effect `import "x"`,
 * `export ... from` and `import x = require("x")` statements (from the parsed syntax
 * tree, so comments and strings never count, and `import()` expressions are not
 * statements).
 */
export function specifiers(text: string): string[] {
  const sf = ts.createSourceFile("x.ts", text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: string[] = [];
  for (const st of sf.statements) {
    let spec: ts.Expression | undefined;
    if (ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) spec = st.moduleSpecifier;
    else if (ts.isImportEqualsDeclaration(st) && ts.isExternalModuleReference(st.moduleReference))
      spec = st.moduleReference.expression;
    if (spec !== undefined && ts.isStringLiteral(spec)) out.push(spec.text);
  }
  return out;
}

/**
 * Resolves a relative specifier of file `from` (a repository path) against the set of
 * known files: the path as written (`./x.ts`), then `.ts` for `.js`, then an index.
 */
export function resolveLocal(from: string, spec: string, files: ReadonlySet<string>): string | undefined {
  const base = join(dirname(from), spec).split("\\").join("/");
  const tries = [base, base.replace(/\.js$/, ".ts"), `${base}.ts`, `${base}/index.ts`];
  return tries.find((t) => files.has(t));
}

/** Every `packages/<pkg>/src/**\/*.ts` file of the repository at `root`. */
export function loadSources(root: string = ROOT): SourceFile[] {
  const pkgsDir = join(root, "packages");
  const abs: Array<{ path: string; pkg: string; text: string }> = [];
  for (const pkg of readdirSync(pkgsDir).sort()) {
    const src = join(pkgsDir, pkg, "src");
    let isDir = false;
    try {
      isDir = statSync(src).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) continue;
    for (const f of walk(src)) {
      abs.push({ path: relative(root, f).split("\\").join("/"), pkg, text: readFileSync(f, "utf8") });
    }
  }
  const known = new Set(abs.map((f) => f.path));
  return abs.map(({ path, pkg, text }) => {
    const local: string[] = [];
    const bare: string[] = [];
    for (const s of specifiers(text)) {
      if (s.startsWith(".")) {
        const r = resolveLocal(path, s, known);
        // `import type` and `import` of one file are one edge.
        if (r !== undefined && !local.includes(r)) local.push(r);
      } else bare.push(s);
    }
    // A trailing newline ends the last line; it does not start another.
    const lines = text.length === 0 ? 0 : text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    return { path, pkg, lines, local, bare };
  });
}

/**
 * Every import circle of a graph (node -> the nodes it imports), each reported once as
 * the path that closes it: `[a, b, c, a]`. Depth-first search with the classic three
 * colours; a back edge to a node on the stack is a circle, read off the stack.
 * Nodes and edges are visited in sorted order, so the report is stable.
 */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 1 | 2>(); // 1: on the stack, 2: done
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (n: string): void => {
    state.set(n, 1);
    stack.push(n);
    for (const m of [...(graph.get(n) ?? [])].sort()) {
      const s = state.get(m);
      if (s === 1) cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (s === undefined) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

/** The import graph of `files` restricted to one package's own files. */
export function packageGraph(files: readonly SourceFile[], pkg: string): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of files)
    if (f.pkg === pkg)
      g.set(
        f.path,
        f.local.filter((p) => p.startsWith(`packages/${pkg}/`)),
      );
  return g;
}

/** The workspace package a bare specifier names (`@iommu-kit/core/driver` -> `core`), else undefined. */
export function workspacePackage(spec: string): string | undefined {
  const m = /^@iommu-kit\/([^/]+)/.exec(spec);
  return m?.[1];
}

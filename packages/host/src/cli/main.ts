#!/usr/bin/env node
/// <reference types="node" />
/**
 * `iommu-kit`: runs scenario files, translates requests against a memory snapshot,
 * explains a walk step by step, dumps decoded tables and prints capability tables.
 * Exit status: 0 it ran / every expectation held, 1 an expectation failed (run, translate
 * --check) or an internal error, 2 bad input (the message names the file, JSON pointer or
 * line, and the field).
 */

import { readFileSync } from "node:fs";
import type { BackendFactory } from "@iommu-kit/core";
import { Command, CommanderError, Option } from "commander";
import { ScenarioError } from "../scenario/load.ts";
import { builtinFactories, findFactory, thrownText } from "./backends.ts";
import { cmdCaps, cmdDump, cmdExplain, cmdRun, cmdTranslate } from "./commands.ts";
import { ExitCode, UsageError } from "./errors.ts";
import { hex } from "./format.ts";
import { progress } from "./images.ts";
import { loadPlugins } from "./input.ts";
import { serve } from "./serve.ts";

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function snapshotOptions(c: Command): Command {
  return c
    .option(
      "--snapshot <dir>",
      "a snapshot folder as in fixtures/snapshots: memory.jsonl, regs.json (and expect.jsonl for translate); RAM [0, 2^40) unless --ram",
    )
    .option(
      "--arch <name>",
      "backend of the snapshot (smmuv3, vtd, or a plugin's; --snapshot: from its name)",
    )
    .option(
      "--memory <file[@base]>",
      "memory image: a JSONL page list ({pa, hex} per 4 KiB page), an ELF core's PT_LOAD segments, or raw bytes at BASE (0x hex or decimal, default 0); repeatable",
      collect,
      [],
    )
    .option(
      "--ram <base+size>",
      "zero-filled RAM where no image covers it (4 KiB aligned); repeatable",
      collect,
      [],
    )
    .option(
      "--regs <file>",
      "register values: a JSON object of names (no prefix/suffix) to numbers or 0x hex strings, or VT-d debugfs iommu_regset text",
    )
    .option("--unit <name>", "the DMAR unit of an iommu_regset file with several (dmar0, ...)")
    .option("--strict", "a table pointer outside every memory image is an error (exit 2), not a warning");
}

const PLUGIN = new Option("--plugin <module>", "load backends from a module (path or package); repeatable")
  .argParser(collect)
  .default([]);

/** This package's version (its package.json ships next to dist/ and src/). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Builds the command-line program (commands, options, help). */
function program(): Command {
  const p = new Command()
    .name("iommu-kit")
    .description(
      "IOMMU models faithful to the bit: run scenarios, translate against snapshots, explain walks, dump tables.",
    )
    .version(packageVersion())
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  p.command("run")
    .description("run scenario files (JSON or YAML); with no file, the built-in default scenario")
    .argument("[files...]", "scenario files")
    .option("--json", "one JSON line per step: {file, step, op, result|error|fault, expect, pass}")
    .option("--stop-on-failure", "stop a file at its first failing step")
    .addOption(PLUGIN)
    .addHelpText(
      "after",
      "\nExit status: 0 every expectation held, 1 one failed (the report names file and step), 2 an invalid file.",
    )
    .action(async (files: string[], o) => {
      process.exitCode = await cmdRun(files, o);
    });
  snapshotOptions(
    p
      .command("translate")
      .description("translate requests against a snapshot (memory images + register values)"),
  )
    .option("--list-registers", "print the backend's register names and defaults, then exit")
    .option(
      "--requests <file|->",
      'JSONL requests: {"sid", "pasid": N|null, "iova": "0x...", "access": "read"|"write"|"exec", "priv"} (--snapshot: its expect.jsonl)',
    )
    .option(
      "--check",
      "compare each result with the line's expected fields (pa, perm, fault, reason); exit 1 on a mismatch",
    )
    .option("--json", "JSON lines (the default and only output of translate)")
    .addOption(PLUGIN)
    .addHelpText("after", () => registerHelp())
    .action(async (o) => {
      process.exitCode = o.listRegisters ? await listRegisters(o) : await cmdTranslate(o);
    });
  snapshotOptions(
    p
      .command("explain")
      .description(
        "explain the walk of one request, level by level, for a scenario (after its steps) or a snapshot",
      ),
  )
    .argument("[file]", "scenario file (default: the built-in scenario)")
    .option("--device <name>", "scenario device")
    .option("--sid <n>", "snapshot StreamID / source-id")
    .option("--pasid <n>", "PASID (omit for none)")
    .option("--iova <addr>", "input address")
    .option("--access <kind>", "read, write or exec", "read")
    .option("--priv", "privileged request")
    .option("--json", "JSON output")
    .addOption(PLUGIN)
    .action(async (file: string | undefined, o) => {
      process.exitCode = await cmdExplain(file, o);
    });
  snapshotOptions(
    p.command("dump").description("the decoded tables of a device (or all) for a scenario or a snapshot"),
  )
    .argument("[file]", "scenario file (default: the built-in scenario)")
    .option("--device <name>", "scenario device (default: every device of its IOMMU)")
    .option("--sid <n>", "snapshot StreamID / source-id (default: all)")
    .option("--json", "JSON output")
    .addOption(PLUGIN)
    .action(async (file: string | undefined, o) => {
      process.exitCode = await cmdDump(file, o);
    });
  p.command("caps")
    .description("the capability table of every device of a scenario (default: the built-in scenario)")
    .argument("[file]", "scenario file")
    .option("--json", "one JSON line per device (same field names as the table)")
    .addOption(PLUGIN)
    .action(async (file: string | undefined, o) => {
      process.exitCode = await cmdCaps(file, o);
    });
  p.command("serve")
    .description(
      "serve /dev/iommu to processes run with the preload library of tests/selftest (Linux's iommufd selftest), until killed",
    )
    .requiredOption("--socket <path>", "Unix socket to listen on (replaced when it exists)")
    .option("--trace", "one line per ioctl on stderr")
    .action(async (o: { socket: string; trace?: boolean }) => {
      await serve({ socket: o.socket, trace: o.trace === true });
    });
  return p;
}

/** `translate --list-registers`. */
async function listRegisters(o: { arch?: string; plugin: string[] }): Promise<number> {
  await loadPlugins(o.plugin, process.cwd());
  if (o.arch === undefined) throw new UsageError("--list-registers needs --arch NAME");
  process.stdout.write(`${registerLines(await findFactory(o.arch))}\n`);
  return ExitCode.OK;
}

let registerTable = "";

function registerHelp(): string {
  return [
    "",
    "Register names (the spec's, without prefix or suffix) and the defaults missing ones take:",
    registerTable || "  (run `iommu-kit translate --arch NAME --list-registers`)",
    "",
    'Output: each request echoed with "pa" and "perm" (r/w/x letters), or "fault":',
    "  {class, name, code, recorded, vendor, fields}; code = SMMUv3 event ID / VT-d fault reason,",
    "  null when the architecture has none (abort STE, VT-d abort-DMA mode).",
    'With --check: "pass" and "mismatches" on each line.',
    "Exit status: 0 when it ran (faults are results) and, with --check, all lines agree; 1 a line",
    "disagrees; 2 bad input (the message names the file and line or option).",
  ].join("\n");
}

/** `  name: A=0x0 B=0x1 ...`, wrapped for --help. */
function registerSummary(f: BackendFactory): string {
  const lines: string[] = [];
  let line = `  ${f.name}:`;
  for (const [k, v] of Object.entries(f.registerDefaults ?? {})) {
    const item = ` ${k}=${hex(v)}`;
    if (line.length + item.length > 100) {
      lines.push(line);
      line = `   `;
    }
    line += item;
  }
  lines.push(line);
  return lines.join("\n");
}

function registerLines(f: BackendFactory): string {
  const regs = Object.entries(f.registerDefaults ?? {}).map(([k, v]) => `${k}=${hex(v)}`);
  return `  ${f.name}:\n${regs.map((r) => `    ${r}`).join("\n") || "    (no snapshot support)"}`;
}

async function main(argv: readonly string[]): Promise<void> {
  try {
    if (argv.includes("translate") && (argv.includes("--help") || argv.includes("-h"))) {
      registerTable = (await builtinFactories())
        .filter((f) => f.registerDefaults !== undefined)
        .map(registerSummary)
        .join("\n");
    }
    await program().parseAsync(argv as string[]);
  } catch (e) {
    progress.clear();
    if (e instanceof CommanderError) {
      // Help and version exit 0; usage errors were printed by commander.
      process.exitCode = e.exitCode === 0 ? 0 : ExitCode.INVALID;
      return;
    }
    if (e instanceof UsageError || e instanceof ScenarioError) {
      process.stderr.write(`iommu-kit: ${e.message}\n`);
      process.exitCode = ExitCode.INVALID;
      return;
    }
    // Anything else is a defect of iommu-kit or a plugin: one line, exit 1.
    process.stderr.write(`iommu-kit: internal error: ${thrownText(e)}\n`);
    process.exitCode = ExitCode.FAILED;
  }
}

// A closed pipe (`iommu-kit run --json | head`) ends the output quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

await main(process.argv);

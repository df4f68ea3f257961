/// <reference types="node" />
/**
 * `iommu-kit serve --socket PATH`: serves /dev/iommu to processes running with the
 * preload library of tests/selftest (see `selftest-mock/server.ts`). Each open of
 * /dev/iommu gets its own host with the iommufd selftest's mock driver. Runs until
 * killed. The integrator registers it in main.ts as:
 *
 * ```ts
 * program.command("serve").requiredOption("--socket <path>").option("--trace")
 *   .action((o) => serve({ socket: o.socket, trace: o.trace === true }));
 * ```
 */

import { rmSync } from "node:fs";
import { startServer } from "../selftest-mock/server.ts";

/** Options of {@link serve}. */
export interface ServeCommandOptions {
  /** Unix socket path (replaced when it exists). */
  readonly socket: string;
  /** Print one line per ioctl on stderr. */
  readonly trace?: boolean;
}

/** Starts serving; resolves once listening (prints `listening PATH` on stdout). */
export async function serve(opts: ServeCommandOptions): Promise<void> {
  if (opts.socket === "") throw new Error("--socket: a path is required");
  rmSync(opts.socket, { force: true });
  const trace = opts.trace === true ? (l: string) => process.stderr.write(`${l}\n`) : undefined;
  await startServer(trace === undefined ? { socket: opts.socket } : { socket: opts.socket, trace });
  process.stdout.write(`listening ${opts.socket}\n`);
}

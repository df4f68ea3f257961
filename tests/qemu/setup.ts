/**
 * Global setup of the qemu project: QEMU from Debian's packages (qemu-system-x86,
 * qemu-system-arm) is installed with apt-get when a binary is missing, so `pnpm test:qemu`
 * and .ci/run (through the root projects) work on a fresh Debian machine.
 */

import { execFileSync } from "node:child_process";

function has(binary: string): boolean {
  try {
    execFileSync(binary, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export default function setup(): void {
  const need = [
    ["qemu-system-x86_64", "qemu-system-x86"],
    ["qemu-system-aarch64", "qemu-system-arm"],
  ]
    .filter(([bin]) => !has(bin!))
    .map(([, pkg]) => pkg!);
  if (need.length === 0) return;
  const root = process.getuid?.() === 0;
  const run = (args: string[]): void => {
    const [cmd, ...rest] = root ? args : ["sudo", "-n", ...args];
    execFileSync(cmd!, rest, { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  };
  console.log(`test:qemu: installing ${need.join(" ")} ...`);
  try {
    run(["apt-get", "update", "-qq"]);
    run(["apt-get", "install", "-y", "-qq", ...need]);
  } catch (e) {
    throw new Error(
      `test:qemu: could not install ${need.join(" ")} with apt-get (needs Debian and root): ${(e as Error).message}`,
    );
  }
  for (const bin of ["qemu-system-x86_64", "qemu-system-aarch64"])
    if (!has(bin)) throw new Error(`test:qemu: ${bin} is still missing after apt-get install`);
}

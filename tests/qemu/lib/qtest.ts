/**
 * A client of QEMU's qtest protocol (-qtest stdio; QEMU system/qtest.c): one command per
 * line in, one "OK [value]" / "FAIL ..." / "ERR ..." line out, in order. Commands are
 * pipelined: `run` writes a whole batch and resolves with the answers of all of them.
 *
 * Debian's QEMU 7.2 lacks the qtest accelerator, so the machine runs under
 * `-accel tcg -icount shift=0,sleep=off` with firmware that halts its only vCPU at the
 * reset vector: the qtest server still serves memory and port commands, and with
 * sleep=off the virtual clock warps to the next timer (edu's DMA timer) as soon as the
 * vCPU is idle (QEMU softmmu/icount.c icount_start_warp_timer).
 */

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

/** A running QEMU under qtest. */
export class QTest {
  readonly #proc: ChildProcessWithoutNullStreams;
  #parts: string[] = [];
  readonly #waiting: Array<(line: string) => void> = [];
  #stderr = "";
  #dead: Error | null = null;
  /** qtest commands sent so far. */
  commands = 0;

  constructor(binary: string, args: readonly string[]) {
    this.#proc = spawn(binary, [...args, "-qtest", "stdio", "-qtest-log", "/dev/null"], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.#proc.stdout.setEncoding("latin1");
    this.#proc.stdout.on("data", (d: string) => this.#onData(d));
    this.#proc.stderr.setEncoding("utf8");
    this.#proc.stderr.on("data", (d: string) => {
      this.#stderr = (this.#stderr + d).slice(-4000);
    });
    this.#proc.on("exit", (code, sig) => {
      this.#dead = new Error(`QEMU exited (code ${code}, signal ${sig}): ${this.#stderr.trim()}`);
      for (const w of this.#waiting.splice(0)) w("");
    });
    this.#proc.on("error", (e) => {
      this.#dead = e;
      for (const w of this.#waiting.splice(0)) w("");
    });
  }

  /** What QEMU printed on stderr (its last 4000 characters). */
  get stderr(): string {
    return this.#stderr;
  }

  #onData(d: string): void {
    // Long answers (b64read of megabytes) arrive in many chunks: keep them in a list and
    // look for the newline only in the new chunk.
    let start = 0;
    let nl = d.indexOf("\n");
    while (nl >= 0) {
      this.#parts.push(d.slice(start, nl));
      const line = this.#parts.join("");
      this.#parts = [];
      // Asynchronous events ("IRQ raise 3") are only sent after irq_intercept_*; none here.
      if (!line.startsWith("IRQ")) this.#waiting.shift()?.(line);
      start = nl + 1;
      nl = d.indexOf("\n", start);
    }
    if (start < d.length) this.#parts.push(d.slice(start));
  }

  /** Sends commands and resolves with each answer's value ("" for a bare OK). Throws on FAIL/ERR. */
  async run(cmds: readonly string[]): Promise<string[]> {
    if (this.#dead) throw this.#dead;
    const answers = cmds.map(
      () =>
        new Promise<string>((resolve) => {
          this.#waiting.push(resolve);
        }),
    );
    this.commands += cmds.length;
    this.#proc.stdin.write(`${cmds.join("\n")}\n`);
    const lines = await Promise.all(answers);
    if (this.#dead) throw this.#dead;
    return lines.map((l, i) => {
      if (l === "OK") return "";
      if (l.startsWith("OK ")) return l.slice(3);
      throw new Error(`qtest: ${JSON.stringify(cmds[i])} answered ${JSON.stringify(l)}`);
    });
  }

  async readq(addr: number): Promise<bigint> {
    return BigInt((await this.run([`readq 0x${addr.toString(16)}`]))[0]!);
  }

  async readl(addr: number): Promise<number> {
    return Number(BigInt((await this.run([`readl 0x${addr.toString(16)}`]))[0]!));
  }

  /** Reads `size` bytes of guest physical memory (b64read). */
  async read(addr: number, size: number): Promise<Buffer> {
    const [v] = await this.run([`b64read 0x${addr.toString(16)} 0x${size.toString(16)}`]);
    return Buffer.from(v!, "base64");
  }

  /** The b64write command that writes `data` at `addr`. */
  static writeCmd(addr: number, data: Uint8Array): string {
    return `b64write 0x${addr.toString(16)} 0x${data.length.toString(16)} ${Buffer.from(data).toString("base64")}`;
  }

  /** Ends QEMU (its stdin closes; qtest then exits) and waits for it. */
  async close(): Promise<void> {
    if (this.#dead) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => this.#proc.kill("SIGKILL"), 5000);
      this.#proc.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      this.#proc.stdin.end();
      this.#proc.kill("SIGTERM");
    });
  }
}

/** Hex of a number for a qtest command. */
export function h(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/// <reference types="node" />
/**
 * A /dev/iommu served from user space: the other half of tests/selftest/preload.c.
 * Each open of /dev/iommu in a process becomes a connection to this Unix socket and
 * gets its own {@link Host} (an iommufd_ctx) with the selftest mock driver; every
 * ioctl arrives as (pid, cmd, arg) and is answered through {@link IommufdFile}, which
 * reads and writes the struct in the caller's memory through /proc/PID/mem.
 *
 * Wire format (little-endian u32 words):
 * - open:   [1, pid]                          -> [fileToken]
 * - ioctl:  [3, pid, cmd, 0, arg lo, arg hi]  -> [errno, fdKind, objId, offset, fileToken, ret]
 *   fdKind 1 = fault, 2 = access, 3 = vEVENTQ: the caller connects again and sends
 * - attach: [2, pid, fileToken, fdKind, objId, fdNumber] -> [0]
 *   after which that connection is the descriptor. An access is released by one 0xff
 *   byte (answered 0xff) or the connection closing (iommufd_test_staccess_release). A
 *   FAULT or vEVENTQ descriptor takes
 *   [op, pid, count, 0, buf lo, buf hi] -> [int32 ret]   (ret < 0: -errno)
 *   op 4 read(2), 5 write(2), 6 poll(2) (ret = the mask), 7 close (the file's
 *   reference released, as iommufd_eventq_fops_release).
 *
 * User memory: a process's virtual address `va` is host physical address
 * `window(pid) + va` (a 2^47-byte window per process and file), so a contiguous
 * user range is a contiguous physical range, and alignment is the user address's.
 */

import { closeSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import type { Server } from "node:net";
import { createServer } from "node:net";
import { Errno, IommuError } from "@iommu-kit/core";
import { Host } from "../host.ts";
import { IommufdFile } from "../uapi/ioctl.ts";
import type { UserMemory } from "../uapi/types.ts";
import { selftestMockFactory } from "./backend.ts";
import type { SelftestAccess } from "./test-cmd.ts";
import { SelftestContext } from "./test-cmd.ts";

const WINDOW = 2 ** 47;
const WINDOWS = 30;

/** /proc/PID/mem of one process, as {@link UserMemory}, with the per-process physical window. */
export class ProcMemory implements UserMemory {
  readonly pid: number;
  readonly base: number;
  #fd: number | null = null;

  constructor(pid: number, base: number) {
    this.pid = pid;
    this.base = base;
  }

  #open(): number {
    if (this.#fd === null) {
      try {
        this.#fd = openSync(`/proc/${this.pid}/mem`, "r+");
      } catch {
        throw new IommuError("EFAULT", `process ${this.pid} is gone`);
      }
    }
    return this.#fd;
  }

  read(va: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    if (length === 0) return out;
    if (va === 0n) throw new IommuError("EFAULT", "NULL user pointer");
    try {
      let done = 0;
      while (done < length) {
        const n = readSync(this.#open(), out, done, length - done, va + BigInt(done));
        if (n <= 0) throw new Error("short read");
        done += n;
      }
    } catch (e) {
      if (e instanceof IommuError) throw e;
      throw new IommuError("EFAULT", `cannot read ${length} bytes at 0x${va.toString(16)} of ${this.pid}`);
    }
    return out;
  }

  write(va: bigint, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (va === 0n) throw new IommuError("EFAULT", "NULL user pointer");
    try {
      let done = 0;
      while (done < bytes.length) {
        const n = writeSync(this.#open(), bytes, done, bytes.length - done, Number(va) + done);
        if (n <= 0) throw new Error("short write");
        done += n;
      }
    } catch (e) {
      if (e instanceof IommuError) throw e;
      throw new IommuError(
        "EFAULT",
        `cannot write ${bytes.length} bytes at 0x${va.toString(16)} of ${this.pid}`,
      );
    }
  }

  /** pin_user_pages in spirit: the first and last byte must be mapped (EFAULT). */
  physical(va: bigint, length: number, pin = true): number {
    if (va >= BigInt(WINDOW) || va + BigInt(length) > BigInt(WINDOW))
      throw new IommuError("EFAULT", "user address beyond the process's address space");
    if (pin) {
      this.read(va, 1);
      if (length > 1) this.read(va + BigInt(length - 1), 1);
    }
    return this.base + Number(va);
  }

  /** The VMA holding `va` has a kernel page size above 4 KiB (hugetlb): a compound page. */
  compound(va: bigint): boolean {
    let smaps: string;
    try {
      smaps = readFileSync(`/proc/${this.pid}/smaps`, "utf8");
    } catch {
      return false;
    }
    let inside = false;
    for (const line of smaps.split("\n")) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
      if (m !== null) {
        inside = BigInt(`0x${m[1]}`) <= va && va < BigInt(`0x${m[2]}`);
        continue;
      }
      if (inside && line.startsWith("KernelPageSize:")) return !/\s4 kB/.test(line);
    }
    return false;
  }

  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }
}

/** One open /dev/iommu. */
class ServedFile {
  readonly token: number;
  readonly host: Host;
  readonly file: IommufdFile;
  readonly selftest: SelftestContext;
  readonly #mems = new Map<number, ProcMemory>();
  /** Selftest accesses by the caller's descriptor number. */
  readonly accessFds = new Map<number, SelftestAccess>();
  refs = 0;

  constructor(token: number) {
    this.token = token;
    this.host = new Host({ ram: [{ base: WINDOW, size: WINDOW * WINDOWS, name: "user" }] });
    this.selftest = new SelftestContext(this.host, {
      pushFault: (id, group) => this.file.eventqs.inject(id, group),
      accessByFd: (fd) => this.accessFds.get(fd),
      pin: (pa, length) => {
        const m = [...this.#mems.values()].find((x) => x.base === Math.floor(pa / WINDOW) * WINDOW);
        if (m === undefined) throw new IommuError("EFAULT", `no process behind ${pa}`);
        m.physical(BigInt(pa - m.base), length);
      },
    });
    this.selftest.toVa = (pa) => {
      const k = Math.floor(pa / WINDOW);
      for (const m of this.#mems.values()) if (m.base === k * WINDOW) return BigInt(pa - m.base);
      return undefined;
    };
    this.file = new IommufdFile(this.host, this.selftest.extensions());
  }

  mem(pid: number): ProcMemory {
    let m = this.#mems.get(pid);
    if (m === undefined) {
      if (this.#mems.size + 1 >= WINDOWS) throw new IommuError("ENOMEM", "too many processes on one file");
      m = new ProcMemory(pid, WINDOW * (this.#mems.size + 1));
      this.#mems.set(pid, m);
    }
    return m;
  }

  close(): void {
    for (const m of this.#mems.values()) m.close();
  }
}

/** Options of {@link startServer}. */
export interface ServeOptions {
  /** Path of the Unix socket. */
  readonly socket: string;
  /** Called for every ioctl (tracing). */
  readonly trace?: (line: string) => void;
}

/** Starts the /dev/iommu server; resolves once it listens. */
export async function startServer(opts: ServeOptions): Promise<Server> {
  const { defaultRegistry } = await import("@iommu-kit/core");
  if (!defaultRegistry.has(selftestMockFactory.name)) defaultRegistry.register(selftestMockFactory);
  const files = new Map<number, ServedFile>();
  let nextToken = 1;
  const server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    let file: ServedFile | null = null;
    let role: { kind: number; obj: number; fd: number; released: boolean } | null = null;
    const reply = (words: number[]): void => {
      const b = Buffer.alloc(words.length * 4);
      for (let i = 0; i < words.length; i++) b.writeUInt32LE(words[i]! >>> 0, i * 4);
      sock.write(b);
    };
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (role !== null) {
          // An access descriptor: one 0xff byte is the preload's close, answered once released.
          if (role.kind === 2 && buf.length > 0) {
            buf = Buffer.alloc(0);
            drop();
            sock.write(Buffer.from([0xff]));
            return;
          }
          // A FAULT or vEVENTQ descriptor: read / write / poll / close requests.
          if (buf.length < 24) return;
          const op = buf.readUInt32LE(0);
          const pid = buf.readUInt32LE(4);
          const count = buf.readUInt32LE(8);
          const ptr = buf.readBigUInt64LE(16);
          buf = buf.subarray(24);
          const f = file;
          const r = role;
          let ret: number;
          if (f === null) ret = -Errno.EBADFD;
          else if (op === 7) {
            release(f, r);
            ret = 0;
          } else {
            const kind = r.kind === 1 ? "fault" : "veventq";
            try {
              ret =
                op === 4
                  ? f.file.eventqs.read(kind, r.obj, ptr, count, f.mem(pid))
                  : op === 5
                    ? f.file.eventqs.write(kind, r.obj, ptr, count, f.mem(pid))
                    : op === 6
                      ? f.file.eventqs.poll(kind, r.obj)
                      : -Errno.EINVAL;
            } catch (e) {
              if (!(e instanceof IommuError)) opts.trace?.(`internal error: ${(e as Error).stack ?? e}`);
              ret = -(e instanceof IommuError ? e.errno : Errno.EIO);
            }
            opts.trace?.(`pid ${pid} ${kind} ${r.obj} op ${op} count ${count} -> ${ret}`);
          }
          const b = Buffer.alloc(4);
          b.writeInt32LE(ret, 0);
          sock.write(b);
          continue;
        }
        if (buf.length < 8) return;
        const op = buf.readUInt32LE(0);
        const pid = buf.readUInt32LE(4);
        if (op === 1) {
          buf = buf.subarray(8);
          file = new ServedFile(nextToken++);
          file.refs++;
          files.set(file.token, file);
          reply([file.token]);
        } else if (op === 2) {
          if (buf.length < 24) return;
          const token = buf.readUInt32LE(8);
          const kind = buf.readUInt32LE(12);
          const obj = buf.readUInt32LE(16);
          const fd = buf.readUInt32LE(20);
          buf = buf.subarray(24);
          file = files.get(token) ?? null;
          if (file !== null) {
            file.refs++;
            role = { kind, obj, fd, released: false };
            if (kind === 2) {
              const acc = file.selftest.accesses.get(obj);
              if (acc !== undefined) file.accessFds.set(fd, acc);
            } else {
              file.file.eventqs.ref(obj, 1);
            }
          }
          reply([0]);
          void pid;
        } else if (op === 3) {
          if (buf.length < 24) return;
          const cmd = buf.readUInt32LE(8);
          const arg = buf.readBigUInt64LE(16);
          buf = buf.subarray(24);
          if (file === null) {
            reply([9, 0, 0, 0, 0, 0]);
            continue;
          }
          let errno: number;
          let nf: { kind: string; id: number; offset: number } | undefined;
          let ret = 0;
          try {
            const r = file.file.ioctl(cmd, arg, file.mem(pid));
            errno = r.errno;
            nf = r.newFd;
            ret = r.ret ?? 0;
          } catch (e) {
            errno = e instanceof IommuError ? e.errno : 5;
            opts.trace?.(`internal error: ${(e as Error).stack ?? e}`);
          }
          opts.trace?.(
            `pid ${pid} ioctl 0x${cmd.toString(16)} arg 0x${arg.toString(16)} -> ${errno}${errno !== 0 ? ` ${file.file.lastError}` : ""}`,
          );
          reply([
            errno,
            nf === undefined ? 0 : nf.kind === "fault" ? 1 : nf.kind === "access" ? 2 : 3,
            nf?.id ?? 0,
            nf?.offset ?? 0,
            file.token,
            ret,
          ]);
        } else {
          sock.destroy();
          return;
        }
      }
    });
    /** An event queue descriptor's reference goes (once: close request or end of connection). */
    function release(f: ServedFile, r: { obj: number; released: boolean }): void {
      if (r.released) return;
      r.released = true;
      f.file.eventqs.ref(r.obj, -1);
    }
    function drop(): void {
      const f = file;
      file = null;
      if (f === null) return;
      if (role !== null) {
        if (role.kind !== 2) release(f, role);
        else {
          f.accessFds.delete(role.fd);
          try {
            f.selftest.destroyAccess(role.obj);
          } catch (e) {
            opts.trace?.(`access release: ${(e as Error).message}`);
          }
        }
      }
      if (--f.refs === 0) {
        f.close();
        files.delete(f.token);
      }
    }
    sock.on("close", drop);
    sock.on("error", drop);
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(opts.socket, () => res());
  });
  return server;
}

/**
 * The iommufd uAPI as bytes (src/uapi): struct layouts of Linux 6.12's
 * include/uapi/linux/iommufd.h, the size rules of iommufd_fops_ioctl /
 * copy_struct_from_user, and every errno path the uAPI layer itself owns. User
 * memory is an in-memory buffer; the host runs the selftest mock driver.
 */

import { BackendRegistry, Errno, IommuError } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import { Host } from "../src/index.ts";
import { SelftestContext } from "../src/selftest-mock/test-cmd.ts";
import type { UserMemory } from "../src/uapi/index.ts";
import { builtinHwInfo, IommufdFile, selftestMockFactory, uapi } from "../src/uapi/index.ts";

const BASE = 0x10000n;
const SIZE = 1 << 20;
const WINDOW = 2 ** 47;

/** A flat buffer at [BASE, BASE + SIZE) of a pretend process; physical = 2^47 + va. */
class FlatMemory implements UserMemory {
  readonly bytes = new Uint8Array(SIZE);
  #check(va: bigint, length: number): number {
    if (va < BASE || va + BigInt(length) > BASE + BigInt(SIZE)) throw new IommuError("EFAULT", "bad pointer");
    return Number(va - BASE);
  }
  read(va: bigint, length: number): Uint8Array {
    const o = this.#check(va, length);
    return this.bytes.slice(o, o + length);
  }
  write(va: bigint, b: Uint8Array): void {
    this.bytes.set(b, this.#check(va, b.length));
  }
  physical(va: bigint, length: number): number {
    this.#check(va, length);
    return WINDOW + Number(va);
  }
  view(va: bigint): DataView {
    return new DataView(this.bytes.buffer, this.#check(va, 0));
  }
}

function setup(): { file: IommufdFile; mem: FlatMemory; st: SelftestContext } {
  const registry = new BackendRegistry();
  registry.register(selftestMockFactory);
  const host = new Host({ ram: [{ base: WINDOW, size: WINDOW, name: "user" }], registry });
  let file: IommufdFile | undefined;
  const st = new SelftestContext(host, {
    pushFault: (id, group) => file!.faultInject(id, group),
    accessByFd: () => undefined,
    pin: () => {},
  });
  file = new IommufdFile(host, st.extensions());
  return { file, mem: new FlatMemory(), st };
}

const io = (nr: number): number => (0x3b << 8) | nr;
const ARG = BASE + 0x1000n;
const BUF = BASE + 0x8000n;

/** Writes a struct of `size` bytes at ARG from (offset, bits, value) fields. */
function put(
  mem: FlatMemory,
  size: number,
  fields: Array<[number, 32 | 64 | 16, number | bigint]>,
  at = ARG,
): void {
  mem.bytes.fill(0, Number(at - BASE), Number(at - BASE) + 512);
  const v = mem.view(at);
  v.setUint32(0, size, true);
  for (const [o, bits, x] of fields) {
    if (bits === 64) v.setBigUint64(o, BigInt(x), true);
    else if (bits === 16) v.setUint16(o, Number(x), true);
    else v.setUint32(o, Number(x), true);
  }
}

function run(file: IommufdFile, mem: FlatMemory, nr: number, arg = ARG): number {
  return file.ioctl(io(nr), arg, mem).errno;
}

function ioasAlloc(file: IommufdFile, mem: FlatMemory): number {
  put(mem, 12, []);
  expect(run(file, mem, uapi.Cmd.IOAS_ALLOC)).toBe(0);
  return mem.view(ARG).getUint32(8, true);
}

/** IOMMU_TEST_OP_MOCK_DOMAIN on `pt`: [stdev, hwpt, idev]. */
function mockDomain(file: IommufdFile, mem: FlatMemory, pt: number, flags = 0): [number, number, number] {
  put(mem, 72, [
    [4, 32, flags === 0 ? 2 : 12],
    [8, 32, pt],
    [28, 32, flags],
  ]);
  expect(run(file, mem, uapi.Cmd.TEST)).toBe(0);
  const v = mem.view(ARG);
  return [v.getUint32(16, true), v.getUint32(20, true), v.getUint32(24, true)];
}

describe("layouts (include/uapi/linux/iommufd.h, 6.12)", () => {
  it("sizeof and offsetofend(last) of every ioctl", () => {
    const want: Record<number, [number, number]> = {
      128: [8, 8],
      129: [12, 12],
      130: [24, 24],
      131: [40, 40],
      132: [32, 32],
      133: [40, 40],
      134: [24, 24],
      135: [24, 24],
      136: [12, 12],
      137: [48, 24],
      138: [40, 32],
      139: [16, 16],
      140: [48, 48],
      141: [32, 32],
      142: [16, 16],
    };
    for (const [nr, [size, min]] of Object.entries(want)) {
      expect(uapi.Layout[Number(nr)], `nr 0x${Number(nr).toString(16)}`).toEqual({ size, min });
    }
    expect(uapi.iommufdIoctl(0x85)).toBe(0x3b85);
  });

  it("IOAS_ALLOC writes out_ioas_id at offset 8 and nothing past size", () => {
    const { file, mem } = setup();
    put(mem, 12, []);
    mem.bytes.fill(0xaa, Number(ARG - BASE) + 12, Number(ARG - BASE) + 32);
    expect(run(file, mem, 0x81)).toBe(0);
    expect([...mem.read(ARG, 16)]).toEqual([12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa]);
  });
});

describe("size rules (iommufd_fops_ioctl, copy_struct_from_user)", () => {
  it("ENOTTY for a number with a size/direction or another type; EFAULT for a bad pointer", () => {
    const { file, mem } = setup();
    put(mem, 12, []);
    expect(file.ioctl(0xc00c3b81, ARG, mem).errno).toBe(Errno.ENOTTY);
    expect(file.ioctl(0x4181, ARG, mem).errno).toBe(Errno.ENOTTY);
    expect(file.ioctl(io(0x9f), ARG, mem).errno).toBe(Errno.ENOTTY);
    expect(run(file, mem, 0x81, 0n)).toBe(Errno.EFAULT);
  });

  it("size below the minimum EINVAL; a longer struct with a zero tail works, a non-zero tail is E2BIG", () => {
    const { file, mem } = setup();
    put(mem, 11, []);
    expect(run(file, mem, 0x81)).toBe(Errno.EINVAL);
    put(mem, 64, []);
    expect(run(file, mem, 0x81)).toBe(0);
    expect(mem.view(ARG).getUint32(8, true)).toBe(1);
    put(mem, 64, [[60, 32, 1]]);
    expect(run(file, mem, 0x81)).toBe(Errno.E2BIG);
    // A shorter struct is zero-extended: HWPT_ALLOC of offsetofend(__reserved) = 24 bytes.
    const ioas = ioasAlloc(file, mem);
    const [, , idev] = mockDomain(file, mem, ioas);
    put(mem, 24, [
      [8, 32, idev],
      [12, 32, ioas],
    ]);
    expect(run(file, mem, 0x89)).toBe(0);
    expect(mem.view(ARG).getUint32(16, true)).toBeGreaterThan(0);
  });

  it("reserved fields and unknown flags are EOPNOTSUPP", () => {
    const { file, mem } = setup();
    put(mem, 12, [[4, 32, 1]]);
    expect(run(file, mem, 0x81)).toBe(Errno.EOPNOTSUPP);
    const ioas = ioasAlloc(file, mem);
    put(mem, 40, [
      [4, 32, 8 | 6],
      [8, 32, ioas],
    ]);
    expect(run(file, mem, 0x85)).toBe(Errno.EOPNOTSUPP);
    put(mem, 40, [
      [4, 32, 6],
      [8, 32, ioas],
      [12, 32, 1],
    ]);
    expect(run(file, mem, 0x85)).toBe(Errno.EOPNOTSUPP);
    put(mem, 32, [
      [4, 32, ioas],
      [12, 32, 1],
    ]);
    expect(run(file, mem, 0x84)).toBe(Errno.EOPNOTSUPP);
    put(mem, 16, [[4, 32, 2]]);
    expect(run(file, mem, 0x8e)).toBe(Errno.EOPNOTSUPP);
  });
});

describe("IOAS ioctls", () => {
  it("MAP: auto IOVA written back (never 0), EOVERFLOW at U64_MAX, EINVAL without R/W or length 0", () => {
    const { file, mem } = setup();
    const ioas = ioasAlloc(file, mem);
    const map = (flags: number, length: bigint, iova = 0n, va = BUF): number => {
      put(mem, 40, [
        [4, 32, flags],
        [8, 32, ioas],
        [16, 64, va],
        [24, 64, length],
        [32, 64, iova],
      ]);
      return run(file, mem, 0x85);
    };
    expect(map(6, 0x1000n)).toBe(0);
    expect(mem.view(ARG).getBigUint64(32, true)).toBe(0x1000n);
    expect(map(7, 0x1000n, 0x100000n)).toBe(0);
    expect(mem.view(ARG).getBigUint64(32, true)).toBe(0x100000n);
    expect(map(6, 0xffff_ffff_ffff_ffffn)).toBe(Errno.EOVERFLOW);
    expect(map(7, 0x1000n, 0xffff_ffff_ffff_ffffn)).toBe(Errno.EOVERFLOW);
    expect(map(7, 0x2000n, 0xffff_ffff_ffff_f000n)).toBe(Errno.EOVERFLOW);
    expect(map(0, 0x1000n)).toBe(Errno.EINVAL);
    expect(map(6, 0n)).toBe(Errno.EINVAL);
    expect(map(7, 0x1000n, 0x100000n)).toBe(Errno.EEXIST);
    expect(map(6, 0x1000n, 0n, 0x10n)).toBe(Errno.EFAULT);
  });

  it("UNMAP: 0 + U64_MAX unmaps all and returns the bytes; nothing mapped ENOENT; overflow EOVERFLOW", () => {
    const { file, mem } = setup();
    const ioas = ioasAlloc(file, mem);
    put(mem, 40, [
      [4, 32, 7],
      [8, 32, ioas],
      [16, 64, BUF],
      [24, 64, 0x3000],
      [32, 64, 0x200000],
    ]);
    expect(run(file, mem, 0x85)).toBe(0);
    const unmap = (iova: bigint, length: bigint): number => {
      put(mem, 24, [
        [4, 32, ioas],
        [8, 64, iova],
        [16, 64, length],
      ]);
      return run(file, mem, 0x86);
    };
    expect(unmap(0x200000n, 0x1000n)).toBe(Errno.ENOENT);
    expect(unmap(0x1000n, 0xffff_ffff_ffff_fff0n)).toBe(Errno.EOVERFLOW);
    expect(unmap(0n, 0xffff_ffff_ffff_ffffn)).toBe(0);
    expect(mem.view(ARG).getBigUint64(16, true)).toBe(0x3000n);
    expect(unmap(0n, 0xffff_ffff_ffff_ffffn)).toBe(0);
    expect(mem.view(ARG).getBigUint64(16, true)).toBe(0n);
    expect(unmap(0x200000n, 0x3000n)).toBe(Errno.ENOENT);
  });

  it("IOVA_RANGES: count written back, EMSGSIZE when the array is short, ULONG_MAX top, alignment", () => {
    const { file, mem } = setup();
    const ioas = ioasAlloc(file, mem);
    put(mem, 32, [
      [4, 32, ioas],
      [8, 32, 0],
      [16, 64, BUF],
    ]);
    expect(run(file, mem, 0x84)).toBe(Errno.EMSGSIZE);
    expect(mem.view(ARG).getUint32(8, true)).toBe(1);
    mockDomain(file, mem, ioas);
    put(mem, 32, [
      [4, 32, ioas],
      [8, 32, 4],
      [16, 64, BUF],
    ]);
    expect(run(file, mem, 0x84)).toBe(0);
    const v = mem.view(ARG);
    expect(v.getUint32(8, true)).toBe(1);
    expect(v.getBigUint64(24, true)).toBe(2048n);
    expect(mem.view(BUF).getBigUint64(0, true)).toBe(1n << 24n);
    expect(mem.view(BUF).getBigUint64(8, true)).toBe((1n << 31n) - 1n);
  });

  it("ALLOW_IOVAS: start >= last and overlapping ranges are EINVAL (iommufd_ioas_load_iovas)", () => {
    const { file, mem } = setup();
    const ioas = ioasAlloc(file, mem);
    const allow = (ranges: Array<[bigint, bigint]>): number => {
      ranges.forEach(([s, l], i) => {
        mem.view(BUF).setBigUint64(16 * i, s, true);
        mem.view(BUF).setBigUint64(16 * i + 8, l, true);
      });
      put(mem, 24, [
        [4, 32, ioas],
        [8, 32, ranges.length],
        [16, 64, BUF],
      ]);
      return run(file, mem, 0x82);
    };
    expect(allow([[0x1000n, 0x1000n]])).toBe(Errno.EINVAL);
    expect(
      allow([
        [0x1000n, 0x2fffn],
        [0x2000n, 0x4fffn],
      ]),
    ).toBe(Errno.EINVAL);
    expect(
      allow([
        [0x1000n, 0x1fffn],
        [0x2000n, 0x4fffn],
      ]),
    ).toBe(0);
  });

  it("OPTION: RLIMIT_MODE get/set and its errnos, HUGE_PAGES per IOAS; only val64 is written", () => {
    const { file, mem } = setup();
    const opt = (option: number, op: number, obj: number, val: bigint): number => {
      put(mem, 24, [
        [4, 32, option],
        [8, 16, op],
        [12, 32, obj],
        [16, 64, val],
      ]);
      return run(file, mem, 0x87);
    };
    expect(opt(0, 1, 0, 7n)).toBe(0);
    expect(mem.view(ARG).getBigUint64(16, true)).toBe(0n);
    expect(opt(0, 0, 0, 2n)).toBe(Errno.EINVAL);
    expect(opt(0, 0, 0, 1n)).toBe(0);
    expect(opt(0, 1, 0, 7n)).toBe(0);
    expect(mem.view(ARG).getBigUint64(16, true)).toBe(1n);
    expect(opt(0, 1, 5, 0n)).toBe(Errno.EOPNOTSUPP);
    expect(opt(1, 1, 0, 0n)).toBe(Errno.ENOENT);
    expect(opt(9, 1, 0, 0n)).toBe(Errno.EOPNOTSUPP);
    const ioas = ioasAlloc(file, mem);
    expect(opt(0, 0, 0, 0n)).toBe(Errno.EBUSY);
    expect(opt(1, 1, ioas, 9n)).toBe(0);
    expect(mem.view(ARG).getBigUint64(16, true)).toBe(1n);
    expect(opt(1, 0, ioas, 0n)).toBe(0);
    expect(opt(1, 1, ioas, 9n)).toBe(0);
    expect(mem.view(ARG).getBigUint64(16, true)).toBe(0n);
    expect(mem.view(ARG).getUint32(4, true)).toBe(1);
    expect(opt(1, 0, ioas, 2n)).toBe(Errno.EINVAL);
    expect(opt(1, 3, ioas, 0n)).toBe(Errno.EOPNOTSUPP);
  });

  it("VFIO_IOAS: GET without one ENODEV, SET of no IOAS ENOENT, CLEAR", () => {
    const { file, mem } = setup();
    put(mem, 12, [[8, 16, 0]]);
    expect(run(file, mem, 0x88)).toBe(Errno.ENODEV);
    put(mem, 12, [
      [4, 32, 5],
      [8, 16, 1],
    ]);
    expect(run(file, mem, 0x88)).toBe(Errno.ENOENT);
    const ioas = ioasAlloc(file, mem);
    put(mem, 12, [
      [4, 32, ioas],
      [8, 16, 1],
    ]);
    expect(run(file, mem, 0x88)).toBe(0);
    put(mem, 12, [[8, 16, 0]]);
    expect(run(file, mem, 0x88)).toBe(0);
    expect(mem.view(ARG).getUint32(4, true)).toBe(ioas);
    put(mem, 12, [[8, 16, 2]]);
    expect(run(file, mem, 0x88)).toBe(0);
    put(mem, 12, [[8, 16, 9]]);
    expect(run(file, mem, 0x88)).toBe(Errno.EOPNOTSUPP);
  });
});

describe("HWPT ioctls", () => {
  it("HWPT_ALLOC: data_type/len mismatch EINVAL, pt EINVAL, FAULT_ID_VALID on paging EOPNOTSUPP, nested data", () => {
    const { file, mem, st } = setup();
    const ioas = ioasAlloc(file, mem);
    const [, , idev] = mockDomain(file, mem, ioas);
    const alloc = (flags: number, pt: number, type = 0, len = 0): number => {
      put(mem, 48, [
        [4, 32, flags],
        [8, 32, idev],
        [12, 32, pt],
        [24, 32, type],
        [28, 32, len],
        [32, 64, BUF],
      ]);
      return run(file, mem, 0x89);
    };
    expect(alloc(0, ioas, 0, 4)).toBe(Errno.EINVAL);
    expect(alloc(0, ioas, 0xdead, 0)).toBe(Errno.EINVAL);
    expect(alloc(0, 99)).toBe(Errno.EINVAL);
    expect(alloc(5, ioas)).toBe(Errno.EOPNOTSUPP);
    expect(alloc(1 << 7, ioas)).toBe(Errno.EOPNOTSUPP);
    expect(alloc(1, ioas)).toBe(0);
    const parent = mem.view(ARG).getUint32(16, true);
    mem.view(BUF).setUint32(0, 0xbadbeef, true);
    expect(alloc(0, parent, 0xdead, 3)).toBe(Errno.EINVAL);
    expect(alloc(0, parent, 0xdeae, 4)).toBe(Errno.EOPNOTSUPP);
    expect(alloc(0, parent, 0xdead, 4)).toBe(0);
    const nested = mem.view(ARG).getUint32(16, true);
    expect(st.domains.has(nested)).toBe(true);
    // HWPT_INVALIDATE writes entry_num back, also on error (iommufd_hwpt_invalidate).
    const inv = (hwpt: number, type: number, len: number, n: number): number => {
      put(mem, 32, [
        [4, 32, hwpt],
        [8, 64, BUF],
        [16, 32, type],
        [20, 32, len],
        [24, 32, n],
      ]);
      return run(file, mem, 0x8d);
    };
    mem.view(BUF).setBigUint64(0, 0n, true);
    mem.view(BUF).setBigUint64(8, 0n, true);
    expect(inv(parent, 0xdeadbeef, 8, 1)).toBe(Errno.ENOENT);
    expect(mem.view(ARG).getUint32(24, true)).toBe(0);
    expect(inv(nested, 0xdadbeef, 8, 0)).toBe(Errno.EINVAL);
    expect(inv(nested, 0xdeadbeef, 9, 1)).toBe(Errno.EINVAL);
    mem.view(BUF).setUint32(12, 7, true);
    expect(inv(nested, 0xdeadbeef, 8, 2)).toBe(Errno.EINVAL);
    expect(mem.view(ARG).getUint32(24, true)).toBe(1);
    expect(inv(nested, 0xdeadbeef, 0, 1)).toBe(Errno.EINVAL);
  });

  it("GET_HW_INFO: partial copy, zeroed tail, data_len of the driver, type check with INPUT_TYPE", () => {
    const { file, mem } = setup();
    const ioas = ioasAlloc(file, mem);
    const [, , idev] = mockDomain(file, mem, ioas);
    const info = (len: number, flags = 0, type = 0): number => {
      mem.bytes.fill(0x55, Number(BUF - BASE), Number(BUF - BASE) + 32);
      put(mem, 40, [
        [4, 32, flags],
        [8, 32, idev],
        [12, 32, len],
        [16, 64, BUF],
        [24, 32, type],
      ]);
      return run(file, mem, 0x8a);
    };
    expect(info(16)).toBe(0);
    const v = mem.view(ARG);
    expect(v.getUint32(12, true)).toBe(8);
    expect(v.getUint32(24, true)).toBe(0xfeedbeef);
    expect(v.getBigUint64(32, true)).toBe(1n); // IOMMU_HW_CAP_DIRTY_TRACKING
    expect([...mem.read(BUF, 18)]).toEqual([
      0, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0, 0, 0, 0, 0, 0x55, 0x55,
    ]);
    expect(info(4)).toBe(0);
    expect([...mem.read(BUF, 6)]).toEqual([0, 0, 0, 0, 0x55, 0x55]);
    expect(info(8, 1, 0xfeedbeef)).toBe(0);
    expect(info(8, 1, 0xfeedbef0)).toBe(Errno.EOPNOTSUPP);
    expect(info(8, 2)).toBe(Errno.EOPNOTSUPP);
    put(mem, 40, [[8, 32, 77]]);
    expect(run(file, mem, 0x8a)).toBe(Errno.ENOENT);
  });

  it("VT-d hw_info always carries IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 (intel_iommu_hw_info)", () => {
    const b = builtinHwInfo({ type: "intel-vtd", flags: 0, capReg: 0x1122n, ecapReg: 0x3344n });
    expect(b.type).toBe(1);
    expect([...b.data]).toEqual([
      1, 0, 0, 0, 0, 0, 0, 0, 0x22, 0x11, 0, 0, 0, 0, 0, 0, 0x44, 0x33, 0, 0, 0, 0, 0, 0,
    ]);
    expect(builtinHwInfo({ type: "none" }).data.length).toBe(0);
  });

  it("dirty tracking: SET flags EOPNOTSUPP, GET_DIRTY_BITMAP ORs into the user bitmap, NO_CLEAR", () => {
    const { file, mem } = setup();
    const ioas = ioasAlloc(file, mem);
    const [, , idev] = mockDomain(file, mem, ioas);
    put(mem, 48, [
      [4, 32, 2],
      [8, 32, idev],
      [12, 32, ioas],
    ]);
    expect(run(file, mem, 0x89)).toBe(0);
    const hwpt = mem.view(ARG).getUint32(16, true);
    put(mem, 40, [
      [4, 32, 7],
      [8, 32, ioas],
      [16, 64, BUF],
      [24, 64, 0x4000],
      [32, 64, 1 << 24],
    ]);
    expect(run(file, mem, 0x85)).toBe(0);
    put(mem, 16, [
      [4, 32, 2],
      [8, 32, hwpt],
    ]);
    expect(run(file, mem, 0x8b)).toBe(Errno.EOPNOTSUPP);
    put(mem, 16, [
      [4, 32, 1],
      [8, 32, hwpt],
    ]);
    expect(run(file, mem, 0x8b)).toBe(0);
    // IOMMU_TEST_OP_DIRTY on IO pages 0 and 2 (page_size 2048).
    const bm = BASE + 0xc000n;
    mem.view(bm).setUint8(0, 0b101);
    put(mem, 72, [
      [4, 32, 13],
      [8, 32, hwpt],
      [24, 64, 1 << 24],
      [32, 64, 0x4000],
      [40, 64, 2048],
      [48, 64, bm],
    ]);
    expect(run(file, mem, 0xa0)).toBe(0);
    expect(mem.view(ARG).getBigUint64(56, true)).toBe(2n);
    const get = (flags: number): number => {
      mem.view(bm).setUint8(0, 0x80);
      put(mem, 48, [
        [4, 32, hwpt],
        [8, 32, flags],
        [16, 64, 1 << 24],
        [24, 64, 0x4000],
        [32, 64, 2048],
        [40, 64, bm],
      ]);
      return run(file, mem, 0x8c);
    };
    expect(get(1)).toBe(0);
    expect(mem.view(bm).getUint8(0)).toBe(0x85);
    expect(get(0)).toBe(0);
    expect(mem.view(bm).getUint8(0)).toBe(0x85);
    expect(get(0)).toBe(0);
    expect(mem.view(bm).getUint8(0)).toBe(0x80);
    expect(get(2)).toBe(Errno.EOPNOTSUPP);
  });

  it("FAULT_QUEUE_ALLOC asks for a descriptor at offset 12 and writes out_fault_id", () => {
    const { file, mem } = setup();
    put(mem, 16, []);
    const r = file.ioctl(io(0x8e), ARG, mem);
    expect(r.errno).toBe(0);
    expect(r.newFd).toEqual({ kind: "fault", id: 1, offset: 12 });
    expect(mem.view(ARG).getUint32(8, true)).toBe(1);
  });

  it("VFIO compat: API version, extensions, ENODEV without a compat IOAS, EINVAL argsz", () => {
    const { file, mem } = setup();
    expect(file.ioctl(io(100), 0n, mem)).toEqual({ errno: 0, ret: 0 });
    expect(file.ioctl(io(101), 3n, mem)).toEqual({ errno: 0, ret: 1 });
    expect(file.ioctl(io(101), 8n, mem)).toEqual({ errno: 0, ret: 0 });
    expect(file.ioctl(io(102), 3n, mem).errno).toBe(Errno.ENODEV);
    expect(file.ioctl(io(102), 2n, mem).errno).toBe(Errno.EINVAL);
    put(mem, 1, []);
    expect(file.ioctl(io(113), ARG, mem).errno).toBe(Errno.EINVAL);
    put(mem, 32, []);
    expect(file.ioctl(io(113), ARG, mem).errno).toBe(Errno.ENODEV);
    expect(file.ioctl(io(120), ARG, mem).errno).toBe(Errno.ENOTTY);
  });
});

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
import { smmuRig, VSTE0, VSTE1 } from "./viommu-rig.ts";

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
    pushFault: (id, group) => file!.eventqs.inject(id, group),
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

// ---------------------------------------------------------------- the vIOMMU uAPI (6.13-6.15)

const VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
const VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
const HWPT_DATA_SELFTEST = 0xdead;
const VIOMMU_INV_SELFTEST = 0xdeadbeef;
const DATA = BASE + 0x4000n;
/** Where read(2) / write(2) buffers live in these tests. */
const RW = BASE + 0x6000n;

/** IOMMU_TEST_CMD op on `id` with u32 fields at union offsets. */
function testCmd(file: IommufdFile, mem: FlatMemory, op: number, id: number, words: number[] = []): number {
  put(mem, 72, [[4, 32, op], [8, 32, id], ...words.map((w, i): [number, 32, number] => [16 + 4 * i, 32, w])]);
  return run(file, mem, uapi.Cmd.TEST);
}

/** IOMMU_VIOMMU_ALLOC of `size` bytes: [errno, out_viommu_id]. */
function viommuAlloc(
  file: IommufdFile,
  mem: FlatMemory,
  dev: number,
  hwpt: number,
  type = VIOMMU_TYPE_SELFTEST,
  flags = 0,
  size = 24,
): [number, number] {
  put(mem, size, [
    [4, 32, flags],
    [8, 32, type],
    [12, 32, dev],
    [16, 32, hwpt],
  ]);
  const e = run(file, mem, 0x90);
  return [e, mem.view(ARG).getUint32(20, true)];
}

function vdeviceAlloc(
  file: IommufdFile,
  mem: FlatMemory,
  viommu: number,
  dev: number,
  virt: bigint,
): [number, number] {
  put(mem, 24, [
    [4, 32, viommu],
    [8, 32, dev],
    [16, 64, virt],
  ]);
  const e = run(file, mem, 0x91);
  return [e, mem.view(ARG).getUint32(12, true)];
}

/** HWPT_ALLOC of a nested HWPT on `pt` with `data` at DATA: [errno, out_hwpt_id]. */
function hwptNested(
  file: IommufdFile,
  mem: FlatMemory,
  dev: number,
  pt: number,
  type: number,
  data: Uint8Array,
  flags = 0,
  faultId = 0,
): [number, number] {
  mem.write(DATA, data);
  put(mem, 48, [
    [4, 32, flags],
    [8, 32, dev],
    [12, 32, pt],
    [24, 32, type],
    [28, 32, data.length],
    [32, 64, DATA],
    [40, 32, faultId],
  ]);
  const e = run(file, mem, 0x89);
  return [e, mem.view(ARG).getUint32(16, true)];
}

/** HWPT_INVALIDATE: [errno, entry_num written back]. */
function invalidate(
  file: IommufdFile,
  mem: FlatMemory,
  id: number,
  type: number,
  entryLen: number,
  entries: Uint8Array,
  num: number,
): [number, number] {
  mem.write(DATA, entries);
  put(mem, 32, [
    [4, 32, id],
    [8, 64, DATA],
    [16, 32, type],
    [20, 32, entryLen],
    [24, 32, num],
  ]);
  const e = run(file, mem, 0x8d);
  return [e, mem.view(ARG).getUint32(24, true)];
}

const u32s = (...w: number[]): Uint8Array => {
  const v = new DataView(new ArrayBuffer(4 * w.length));
  for (let i = 0; i < w.length; i++) v.setUint32(4 * i, w[i]! >>> 0, true);
  return new Uint8Array(v.buffer);
};
const u64s = (...w: bigint[]): Uint8Array => {
  const v = new DataView(new ArrayBuffer(8 * w.length));
  for (let i = 0; i < w.length; i++) v.setBigUint64(8 * i, w[i]!, true);
  return new Uint8Array(v.buffer);
};
const errnoOf = (fn: () => unknown): number => {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.errno;
    throw e;
  }
  return 0;
};

/** A mock device on an IOAS, a nest parent and a selftest vIOMMU over it. */
function viommuSetup(): ReturnType<typeof setup> & {
  ioas: number;
  stdev: number;
  idev: number;
  parent: number;
  viommu: number;
} {
  const s = setup();
  const ioas = ioasAlloc(s.file, s.mem);
  const [stdev, , idev] = mockDomain(s.file, s.mem, ioas);
  put(s.mem, 48, [
    [4, 32, uapi.HWPT_ALLOC_NEST_PARENT],
    [8, 32, idev],
    [12, 32, ioas],
  ]);
  expect(run(s.file, s.mem, 0x89)).toBe(0);
  const parent = s.mem.view(ARG).getUint32(16, true);
  const [e, viommu] = viommuAlloc(s.file, s.mem, idev, parent);
  expect(e).toBe(0);
  return { ...s, ioas, stdev, idev, parent, viommu };
}

describe("vIOMMU ioctls (include/uapi/linux/iommufd.h, 6.15)", () => {
  it("numbers, sizes and min sizes: VIOMMU_ALLOC 0x90 24/24, VDEVICE_ALLOC 0x91 24/24, VEVENTQ_ALLOC 0x93 32/28", () => {
    expect([uapi.Cmd.VIOMMU_ALLOC, uapi.Cmd.VDEVICE_ALLOC, uapi.Cmd.VEVENTQ_ALLOC]).toEqual([
      0x90, 0x91, 0x93,
    ]);
    expect(uapi.Layout[0x90]).toEqual({ size: 24, min: 24 });
    expect(uapi.Layout[0x91]).toEqual({ size: 24, min: 24 });
    expect(uapi.Layout[0x93]).toEqual({ size: 32, min: 28 });
    // IOAS_MAP_FILE (0x8f) and IOAS_CHANGE_PROCESS (0x92) are not served.
    const { file, mem } = setup();
    put(mem, 64, []);
    expect(run(file, mem, 0x8f)).toBe(Errno.ENOTTY);
    expect(run(file, mem, 0x92)).toBe(Errno.ENOTTY);
  });

  it("VIOMMU_ALLOC: flags / DEFAULT type EOPNOTSUPP, size rules, out_viommu_id at 20 and nothing past size", () => {
    const { file, mem, idev, parent, ioas } = viommuSetup();
    const auto = file.host.objects().find((o) => o.kind === "hwpt-paging" && o.id !== parent)!.id;
    expect(viommuAlloc(file, mem, idev, parent, VIOMMU_TYPE_SELFTEST, 1)[0]).toBe(Errno.EOPNOTSUPP);
    expect(viommuAlloc(file, mem, idev, parent, 0)[0]).toBe(Errno.EOPNOTSUPP);
    // The mock driver has only the selftest type (mock_viommu_alloc).
    expect(viommuAlloc(file, mem, idev, parent, 1)[0]).toBe(Errno.EOPNOTSUPP);
    // iommufd_get_hwpt_paging: not a paging HWPT (an IOAS) ENOENT; one without NEST_PARENT EINVAL.
    expect(viommuAlloc(file, mem, idev, ioas)[0]).toBe(Errno.ENOENT);
    expect(viommuAlloc(file, mem, idev, auto)[0]).toBe(Errno.EINVAL);
    expect(viommuAlloc(file, mem, ioas, parent)[0]).toBe(Errno.ENOENT);
    expect(viommuAlloc(file, mem, idev, parent, VIOMMU_TYPE_SELFTEST, 0, 20)[0]).toBe(Errno.EINVAL);
    // 6.16's data_len / data_uptr are not 6.15's: a non-zero tail is E2BIG.
    put(mem, 32, [
      [8, 32, VIOMMU_TYPE_SELFTEST],
      [12, 32, idev],
      [16, 32, parent],
      [24, 32, 8],
    ]);
    expect(run(file, mem, 0x90)).toBe(Errno.E2BIG);
    put(mem, 24, [
      [8, 32, VIOMMU_TYPE_SELFTEST],
      [12, 32, idev],
      [16, 32, parent],
    ]);
    mem.bytes.fill(0xaa, Number(ARG - BASE) + 24, Number(ARG - BASE) + 32);
    expect(run(file, mem, 0x90)).toBe(0);
    const id = mem.view(ARG).getUint32(20, true);
    expect(file.host.describe(id)).toMatchObject({ kind: "viommu", type: "selftest", hwpt: parent });
    expect([...mem.read(ARG + 24n, 8)]).toEqual(new Array(8).fill(0xaa));
  });

  it("VDEVICE_ALLOC: out_vdevice_id at 12; virt_id above 2^53 EINVAL; EEXIST for a taken virt_id or a device with one", () => {
    const { file, mem, idev, viommu, ioas } = viommuSetup();
    const [, , idev2] = mockDomain(file, mem, ioas);
    expect(vdeviceAlloc(file, mem, viommu, idev, 1n << 60n)[0]).toBe(Errno.EINVAL);
    const [e, vdev] = vdeviceAlloc(file, mem, viommu, idev, 0x99n);
    expect(e).toBe(0);
    expect(file.host.describe(vdev)).toMatchObject({ kind: "vdevice", viommu, device: idev, virtId: 0x99 });
    expect(vdeviceAlloc(file, mem, viommu, idev2, 0x99n)[0]).toBe(Errno.EEXIST);
    expect(vdeviceAlloc(file, mem, viommu, idev, 0x98n)[0]).toBe(Errno.EEXIST);
    expect(vdeviceAlloc(file, mem, ioas, idev2, 0x98n)[0]).toBe(Errno.ENOENT);
  });

  it("HWPT_ALLOC on a vIOMMU: FAULT_ID_VALID only, data required (EOPNOTSUPP), selftest data gives a nested mock HWPT", () => {
    const { file, mem, idev, viommu, st } = viommuSetup();
    const data = u32s(0xbadbeef);
    expect(
      hwptNested(file, mem, idev, viommu, HWPT_DATA_SELFTEST, data, uapi.HWPT_ALLOC_NEST_PARENT)[0],
    ).toBe(Errno.EOPNOTSUPP);
    expect(hwptNested(file, mem, idev, viommu, 0, new Uint8Array(0))[0]).toBe(Errno.EOPNOTSUPP);
    // SMMUv3 data is decoded for the driver, which here is the mock: not its type.
    expect(hwptNested(file, mem, idev, viommu, 2, u64s(1n, 0n))[0]).toBe(Errno.EOPNOTSUPP);
    const [e, nested] = hwptNested(file, mem, idev, viommu, HWPT_DATA_SELFTEST, data);
    expect(e).toBe(0);
    expect(file.host.describe(nested)).toMatchObject({ kind: "hwpt-nested", viommu });
    // IOMMU_TEST_OP_MD_CHECK_IOTLB sees the nested mock domain.
    expect(testCmd(file, mem, 14, nested, [3, 0xbadbeef])).toBe(0);
    expect(st.domains.get(nested)).toBeDefined();
  });

  it("HWPT_INVALIDATE on a vIOMMU: mock_viommu_cache_invalidate, entry_num written back; a paging HWPT is 6.12's ENOENT", () => {
    const { file, mem, idev, viommu, parent } = viommuSetup();
    expect(vdeviceAlloc(file, mem, viommu, idev, 0x99n)[0]).toBe(0);
    const check = (slot: number, value: number): number => testCmd(file, mem, 16, idev, [slot, value]);
    for (let i = 0; i < 4; i++) expect(check(i, 0xbaddad)).toBe(0);
    expect(check(4, 0xbaddad)).toBe(Errno.EINVAL);
    expect(invalidate(file, mem, viommu, VIOMMU_INV_SELFTEST, 12, new Uint8Array(0), 0)).toEqual([0, 0]);
    expect(invalidate(file, mem, viommu, 0xdadbeef, 12, new Uint8Array(0), 0)).toEqual([Errno.EINVAL, 0]);
    // Entry 0 clears cache[1]; entry 1 names cache_id 4: EINVAL with 1 handled.
    expect(invalidate(file, mem, viommu, VIOMMU_INV_SELFTEST, 12, u32s(0, 0x99, 1, 0, 0x99, 4), 2)).toEqual([
      Errno.EINVAL,
      1,
    ]);
    expect([check(0, 0xbaddad), check(1, 0), check(2, 0xbaddad)]).toEqual([0, 0, 0]);
    expect(invalidate(file, mem, viommu, VIOMMU_INV_SELFTEST, 12, u32s(2, 0x99, 0), 1)).toEqual([
      Errno.EOPNOTSUPP,
      0,
    ]);
    expect(invalidate(file, mem, viommu, VIOMMU_INV_SELFTEST, 12, u32s(0, 0x98, 0), 1)).toEqual([
      Errno.EINVAL,
      0,
    ]);
    // A 16-byte entry: copy_struct_from_user takes a zero tail, refuses a non-zero one before any entry runs.
    expect(invalidate(file, mem, viommu, VIOMMU_INV_SELFTEST, 16, u32s(0, 0x99, 2, 1), 1)).toEqual([
      Errno.E2BIG,
      0,
    ]);
    expect(check(2, 0xbaddad)).toBe(0);
    expect(invalidate(file, mem, viommu, VIOMMU_INV_SELFTEST, 16, u32s(1, 0x99, 3, 0), 1)).toEqual([0, 1]);
    for (let i = 0; i < 4; i++) expect(check(i, 0)).toBe(0);
    // SMMUv3 commands to the mock vIOMMU: none is EINVAL (full_user_array), some EINVAL handled 0.
    expect(invalidate(file, mem, viommu, 1, 16, new Uint8Array(0), 0)).toEqual([Errno.EINVAL, 0]);
    expect(invalidate(file, mem, viommu, 1, 16, u64s(5n, 0n), 1)).toEqual([Errno.EINVAL, 0]);
    expect(invalidate(file, mem, parent, VIOMMU_INV_SELFTEST, 12, u32s(0, 0x99, 0), 1)).toEqual([
      Errno.ENOENT,
      0,
    ]);
  });
});

describe("vEVENTQ and FAULT descriptors (drivers/iommu/iommufd/eventq.c, 6.15)", () => {
  /** A vIOMMU whose device sits on a nested HWPT of it with virt_id 0x99. */
  function onNested(faultId = 0): ReturnType<typeof viommuSetup> & { nested: number; vdev: number } {
    const s = viommuSetup();
    const [, vdev] = vdeviceAlloc(s.file, s.mem, s.viommu, s.idev, 0x99n);
    const [e, nested] = hwptNested(
      s.file,
      s.mem,
      s.idev,
      s.viommu,
      HWPT_DATA_SELFTEST,
      u32s(0),
      faultId === 0 ? 0 : uapi.HWPT_FAULT_ID_VALID,
      faultId,
    );
    expect(e).toBe(0);
    expect(testCmd(s.file, s.mem, 10, s.stdev, [nested])).toBe(0);
    return { ...s, nested, vdev };
  }

  function veventqAlloc(
    file: IommufdFile,
    mem: FlatMemory,
    fields: { flags?: number; viommu: number; type?: number; depth?: number; reserved?: number },
    size = 32,
  ): { errno: number; id: number; newFd?: unknown } {
    put(mem, size, [
      [4, 32, fields.flags ?? 0],
      [8, 32, fields.viommu],
      [12, 32, fields.type ?? VEVENTQ_TYPE_SELFTEST],
      [16, 32, fields.depth ?? 2],
      [28, 32, fields.reserved ?? 0],
    ]);
    const r = file.ioctl(io(0x93), ARG, mem);
    return { errno: r.errno, id: mem.view(ARG).getUint32(20, true), newFd: r.newFd };
  }

  it("VEVENTQ_ALLOC: flags, __reserved, DEFAULT type EOPNOTSUPP; depth 0 EINVAL; min size 28; one per type (EEXIST)", () => {
    const { file, mem, viommu, ioas } = viommuSetup();
    expect(veventqAlloc(file, mem, { viommu, flags: 1 }).errno).toBe(Errno.EOPNOTSUPP);
    expect(veventqAlloc(file, mem, { viommu, reserved: 1 }).errno).toBe(Errno.EOPNOTSUPP);
    expect(veventqAlloc(file, mem, { viommu, type: 0 }).errno).toBe(Errno.EOPNOTSUPP);
    expect(veventqAlloc(file, mem, { viommu, depth: 0 }).errno).toBe(Errno.EINVAL);
    expect(veventqAlloc(file, mem, { viommu: ioas }).errno).toBe(Errno.ENOENT);
    expect(veventqAlloc(file, mem, { viommu }, 27).errno).toBe(Errno.EINVAL);
    const q = veventqAlloc(file, mem, { viommu }, 28);
    expect(q.errno).toBe(0);
    expect(q.newFd).toEqual({ kind: "veventq", id: q.id, offset: 24 });
    expect(file.host.describe(q.id)).toMatchObject({ kind: "veventq", viommu, type: "selftest", depth: 2 });
    expect(veventqAlloc(file, mem, { viommu, depth: 4 }).errno).toBe(Errno.EEXIST);
  });

  it("read: header {flags, sequence} + virt_id; too small reads 0 and keeps it; LOST_EVENTS past depth; poll; no write", () => {
    const { file, mem, viommu, idev, nested, vdev } = onNested();
    // No vEVENTQ of the selftest type: iommufd_viommu_report_event EOPNOTSUPP.
    expect(testCmd(file, mem, 17, 0, [idev])).toBe(Errno.EOPNOTSUPP);
    const q = veventqAlloc(file, mem, { viommu }).id;
    const read = (count: number): number => file.eventqs.read("veventq", q, RW, count, mem);
    expect(file.eventqs.poll("veventq", q)).toBe(0);
    expect(read(64)).toBe(0);
    expect(testCmd(file, mem, 17, 0, [idev])).toBe(0);
    expect(file.eventqs.poll("veventq", q)).toBe(0x41);
    expect(read(11)).toBe(0);
    mem.bytes.fill(0xcc, Number(RW - BASE), Number(RW - BASE) + 64);
    expect(read(12)).toBe(12);
    expect([...mem.read(RW, 16)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0x99, 0, 0, 0, 0xcc, 0xcc, 0xcc, 0xcc]);
    for (let i = 0; i < 3; i++) expect(testCmd(file, mem, 17, 0, [idev])).toBe(0);
    // A buffer of 12 + 8 holds the first record only: the second (12 bytes) does not fit.
    expect(read(20)).toBe(12);
    expect([...mem.read(RW, 12)]).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 0x99, 0, 0, 0]);
    mem.bytes.fill(0xcc, Number(RW - BASE), Number(RW - BASE) + 64);
    expect(read(64)).toBe(20);
    expect([...mem.read(RW, 24)]).toEqual([
      0, 0, 0, 0, 2, 0, 0, 0, 0x99, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0xcc, 0xcc, 0xcc, 0xcc,
    ]);
    expect(read(64)).toBe(0);
    expect(errnoOf(() => file.eventqs.write("veventq", q, RW, 8, mem))).toBe(Errno.EINVAL);
    // A bad buffer with nothing read: EFAULT, the record stays.
    expect(testCmd(file, mem, 17, 0, [idev])).toBe(0);
    expect(errnoOf(() => file.eventqs.read("veventq", q, 8n, 64, mem))).toBe(Errno.EFAULT);
    expect(read(64)).toBe(12);
    // An open descriptor holds the vEVENTQ; the vEVENTQ holds the vIOMMU.
    file.eventqs.ref(q, 1);
    put(mem, 8, [[4, 32, q]]);
    expect(run(file, mem, 0x80)).toBe(Errno.EBUSY);
    put(mem, 8, [[4, 32, viommu]]);
    expect(run(file, mem, 0x80)).toBe(Errno.EBUSY);
    file.eventqs.ref(q, -1);
    put(mem, 8, [[4, 32, q]]);
    expect(run(file, mem, 0x80)).toBe(0);
    expect(errnoOf(() => read(64))).toBe(Errno.EBADFD);
    void nested;
    void vdev;
  });

  it("FAULT read: whole iommu_hwpt_pgfault records (ESPIPE otherwise), cookie from 1 at read time, length 0", () => {
    const { file, mem, idev, st, viommu } = viommuSetup();
    put(mem, 16, []);
    expect(run(file, mem, 0x8e)).toBe(0);
    const fault = mem.view(ARG).getUint32(8, true);
    expect(vdeviceAlloc(file, mem, viommu, idev, 7n)[0]).toBe(0);
    const [e, nested] = hwptNested(
      file,
      mem,
      idev,
      viommu,
      HWPT_DATA_SELFTEST,
      u32s(0),
      uapi.HWPT_FAULT_ID_VALID,
      fault,
    );
    expect(e).toBe(0);
    const stdev = [...st.stdevs.keys()][0]!;
    expect(testCmd(file, mem, 10, stdev, [nested])).toBe(0);
    const trigger = (): number => {
      put(mem, 72, [
        [4, 32, 15],
        [16, 32, idev],
        [20, 32, 1],
        [24, 32, 2],
        [28, 32, 3],
        [32, 64, 0xdeadbeafn],
      ]);
      return run(file, mem, uapi.Cmd.TEST);
    };
    const read = (count: number): number => file.eventqs.read("fault", fault, RW, count, mem);
    const write = (bytes: Uint8Array): number => {
      mem.write(RW, bytes);
      return file.eventqs.write("fault", fault, RW, bytes.length, mem);
    };
    expect(file.eventqs.poll("fault", fault)).toBe(0x4);
    expect(read(40)).toBe(0);
    expect(trigger()).toBe(0);
    expect(file.eventqs.poll("fault", fault)).toBe(0x45);
    expect(errnoOf(() => read(39))).toBe(Errno.ESPIPE);
    expect(read(0)).toBe(0);
    expect(read(80)).toBe(40);
    expect([...mem.read(RW, 40)]).toEqual([
      ...u32s(3, idev, 1, 2, 3, 0),
      ...u64s(0xdeadbeafn),
      ...u32s(0, 1),
    ]);
    expect(file.eventqs.poll("fault", fault)).toBe(0x4);
    // write: ESPIPE for a partial response; bad code or unknown cookie EINVAL; the kernel's
    // count of uncopied bytes (8) for a buffer it cannot read.
    expect(errnoOf(() => write(u32s(1, 0).subarray(0, 7)))).toBe(Errno.ESPIPE);
    expect(errnoOf(() => write(u32s(1, 2)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => write(u32s(9, 0)))).toBe(Errno.EINVAL);
    expect(file.eventqs.write("fault", fault, 8n, 8, mem)).toBe(8);
    expect(st.responses).toEqual([]);
    expect(write(u32s(1, 1, 1, 0))).toBe(8);
    expect(st.responses).toEqual([{ device: idev, grpid: 2, code: 1 }]);
    // Two groups read at once get cookies 1 and 2 (the lowest free ids).
    expect(trigger()).toBe(0);
    expect(trigger()).toBe(0);
    expect(read(80)).toBe(80);
    expect([mem.view(RW).getUint32(36, true), mem.view(RW).getUint32(76, true)]).toEqual([1, 2]);
    // Destroying the FAULT answers what is outstanding INVALID (iommufd_fault_destroy); an
    // open descriptor makes it EBUSY first.
    expect(testCmd(file, mem, 10, stdev, [file.host.objects().find((o) => o.kind === "ioas")!.id])).toBe(0);
    put(mem, 8, [[4, 32, nested]]);
    expect(run(file, mem, 0x80)).toBe(0);
    file.eventqs.ref(fault, 1);
    put(mem, 8, [[4, 32, fault]]);
    expect(run(file, mem, 0x80)).toBe(Errno.EBUSY);
    file.eventqs.ref(fault, -1);
    expect(run(file, mem, 0x80)).toBe(0);
    expect(st.responses.slice(1)).toEqual([
      { device: idev, grpid: 2, code: 1 },
      { device: idev, grpid: 2, code: 1 },
    ]);
    expect(errnoOf(() => read(40))).toBe(Errno.EBADFD);
  });
});

describe("SMMUv3 through the uAPI (IOMMU_VIOMMU_TYPE_ARM_SMMUV3)", () => {
  async function smmu(): Promise<{ file: IommufdFile; mem: FlatMemory; dev: number; ioas: number }> {
    const host = new Host({ ram: [{ base: 0, size: 2 ** 30 }], tables: { base: 2 ** 30, size: 2 ** 24 } });
    await host.loadBackend("smmuv3");
    host.addIommu("smmu0", "smmuv3");
    const dev = host.addDevice({ iommu: "smmu0", rid: 8 });
    const file = new IommufdFile(host);
    const mem = new FlatMemory();
    return { file, mem, dev, ioas: ioasAlloc(file, mem) };
  }

  it("vIOMMU, vSTE data decoding (16 bytes, E2BIG tail), raw commands with vSIDs and entry_num", async () => {
    const { file, mem, dev, ioas } = await smmu();
    put(mem, 48, [
      [4, 32, uapi.HWPT_ALLOC_NEST_PARENT],
      [8, 32, dev],
      [12, 32, ioas],
    ]);
    expect(run(file, mem, 0x89)).toBe(0);
    const parent = mem.view(ARG).getUint32(16, true);
    const [e, viommu] = viommuAlloc(file, mem, dev, parent, 1);
    expect(e).toBe(0);
    expect(file.host.describe(viommu)).toMatchObject({ kind: "viommu", type: "arm-smmuv3", hwpt: parent });
    expect(vdeviceAlloc(file, mem, viommu, dev, 0x20n)[0]).toBe(0);
    // iommu_copy_struct_from_user(..., ste): below 16 bytes EINVAL, a non-zero tail E2BIG.
    const ste = u64s(1n | (4n << 1n), 0n); // V = 1, Config = bypass (0b100)
    expect(hwptNested(file, mem, dev, viommu, 2, ste.subarray(0, 8))[0]).toBe(Errno.EINVAL);
    expect(hwptNested(file, mem, dev, viommu, 2, new Uint8Array([...ste, 0, 0, 0, 1]))[0]).toBe(Errno.E2BIG);
    // arm_smmu_validate_vste: a bit a guest may not set (word 0 bit 55, between S1ContextPtr and S1CDMax) is EIO.
    expect(hwptNested(file, mem, dev, viommu, 2, u64s(1n | (4n << 1n) | (1n << 55n), 0n))[0]).toBe(Errno.EIO);
    const [ok, nested] = hwptNested(file, mem, dev, viommu, 2, new Uint8Array([...ste, 0, 0, 0, 0]));
    expect(ok).toBe(0);
    expect(file.host.describe(nested)).toMatchObject({ kind: "hwpt-nested", viommu });
    // CMD_CFGI_CD (0x05) with vSID 0x20, then TLBI_NH_ALL (0x10).
    const cfgi = 0x05n | (0x20n << 32n);
    expect(invalidate(file, mem, viommu, 1, 16, u64s(cfgi, 0n, 0x10n, 0n), 2)).toEqual([0, 2]);
    // A shorter entry is zero-extended: 8 bytes of TLBI_NH_ALL.
    expect(invalidate(file, mem, viommu, 1, 8, u64s(0x10n), 1)).toEqual([0, 1]);
    // Unknown vSID: EIO at its index (arm_vsmmu_vsid_to_sid); none: EINVAL; a non-zero tail E2BIG.
    expect(invalidate(file, mem, viommu, 1, 16, u64s(0x10n, 0n, 0x05n | (0x21n << 32n), 0n), 2)).toEqual([
      Errno.EIO,
      1,
    ]);
    expect(invalidate(file, mem, viommu, 1, 16, new Uint8Array(0), 0)).toEqual([Errno.EINVAL, 0]);
    expect(invalidate(file, mem, viommu, 1, 24, u64s(0x10n, 0n, 1n), 1)).toEqual([Errno.E2BIG, 0]);
    // The vIOMMU's type is arm-smmuv3: the selftest vIOMMU type is EOPNOTSUPP on an SMMU.
    expect(viommuAlloc(file, mem, dev, parent)[0]).toBe(Errno.EOPNOTSUPP);
  });
});

describe("a FAULT descriptor over the host's page requests (VT-d PRI)", () => {
  it("read gives the held DMA's iommu_hwpt_pgfault with the descriptor's cookie; a SUCCESS write retries it", async () => {
    const host = new Host({ ram: [{ base: 0, size: 2 ** 30 }], tables: { base: 2 ** 30, size: 2 ** 24 } });
    await host.loadBackend("vtd");
    host.addIommu("dmar0", "vtd");
    const dev = host.addDevice({ iommu: "dmar0", rid: 0x300, pasidBits: 20, ats: true, pri: true });
    const file = new IommufdFile(host);
    const mem = new FlatMemory();
    put(mem, 16, []);
    expect(run(file, mem, 0x8e)).toBe(0);
    const fault = mem.view(ARG).getUint32(8, true);
    const ioas = host.ioasAlloc();
    const hwpt = host.hwptAlloc({ device: dev, pt: ioas, faultQueue: fault });
    host.attach(dev, "rid", hwpt);
    host.memWrite(0x1000010, new Uint8Array([0xca, 0xfe, 0, 0]));
    const held = host.dma(dev, { iova: 0x400010, access: "read", length: 4 });
    expect(held).toMatchObject({ ok: false, pending: true });
    expect(file.eventqs.poll("fault", fault)).toBe(0x45);
    expect(file.eventqs.read("fault", fault, RW, 40, mem)).toBe(40);
    // LAST_PAGE, no PASID, grpid 0, READ, the page address, length 0, cookie 1.
    expect([...mem.read(RW, 40)]).toEqual([...u32s(2, dev, 0, 0, 1, 0), ...u64s(0x400000n), ...u32s(0, 1)]);
    expect(host.describe(fault)).toMatchObject({ pending: 0 });
    host.ioasMap(ioas, { iova: 0x400000, length: 0x1000, pa: 0x1000000, prot: "rw" });
    mem.write(RW, u32s(1, 0));
    expect(file.eventqs.write("fault", fault, RW, 8, mem)).toBe(8);
    expect(host.describe(fault)).toMatchObject({ pending: 0, outstanding: [] });
    // The same cookie again: nothing read with it any more (EINVAL).
    expect(errnoOf(() => file.eventqs.write("fault", fault, RW, 8, mem))).toBe(Errno.EINVAL);
  });
});

describe("an SMMUv3 vEVENTQ descriptor (arm_vmaster_report_event through iommufd_veventq_fops_read)", () => {
  it("a guest stage-1 fault reads as header {0, 0} + the 32-byte event with the vSID in place of the StreamID", async () => {
    const { h, dev, parent } = await smmuRig();
    const viommu = h.viommuAlloc({ device: dev, hwpt: parent, type: "arm-smmuv3" });
    h.vdeviceAlloc({ viommu, device: dev, virtId: 0x99 });
    const nested = h.hwptAlloc({ device: dev, pt: viommu, data: { ste: [VSTE0, VSTE1] } });
    h.attach(dev, "rid-all-pasids", nested);
    const file = new IommufdFile(h);
    const mem = new FlatMemory();
    put(mem, 32, [
      [8, 32, viommu],
      [12, 32, 1],
      [16, 32, 2],
    ]);
    const r = file.ioctl(io(0x93), ARG, mem);
    expect(r.errno).toBe(0);
    const q = mem.view(ARG).getUint32(20, true);
    expect(r.newFd).toEqual({ kind: "veventq", id: q, offset: 24 });
    expect(h.dma(dev, { iova: 0x2000, access: "read", length: 4 })).toMatchObject({ ok: false });
    expect(file.eventqs.poll("veventq", q)).toBe(0x41);
    // poll takes nothing out of the queue: the record still counts against the depth.
    expect(h.describe(q)).toMatchObject({ pending: 1 });
    // 8 + 32 bytes; 39 is too few for the record and reads nothing.
    expect(file.eventqs.read("veventq", q, RW, 39, mem)).toBe(0);
    expect(file.eventqs.read("veventq", q, RW, 64, mem)).toBe(40);
    // EventID F_TRANSLATION (0x10), StreamID = vSID 0x99, RnW, CLASS = IN, InputAddr 0x2000.
    expect([...mem.read(RW, 40)]).toEqual([
      ...u32s(0, 0),
      ...u64s(0x10n | (0x99n << 32n), (1n << 35n) | (0b10n << 40n), 0x2000n, 0n),
    ]);
    // Depth 2: two more faults fill it, a third leaves the LOST_EVENTS header (sequence 3).
    for (let i = 0; i < 3; i++) h.dma(dev, { iova: 0x2000, access: "read", length: 4 });
    expect(file.eventqs.read("veventq", q, RW, 128, mem)).toBe(40 + 40 + 8);
    const v = mem.view(RW);
    expect([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(44, true)]).toEqual([0, 1, 2]);
    expect([v.getUint32(80, true), v.getUint32(84, true)]).toEqual([1, 3]);
  });
});

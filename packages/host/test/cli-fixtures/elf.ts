/** Builds small ELF64 little-endian core files (ET_CORE) with PT_LOAD segments, for snapshot tests. */

/** A PT_LOAD segment: bytes at a physical address, memsz >= data length. */
export interface ElfLoad {
  readonly paddr: number;
  readonly data: Uint8Array;
  readonly memsz?: number;
}

/** An ELF64 core with a PT_NOTE first (as QEMU writes) and then the PT_LOAD segments. */
export function buildElfCore(loads: readonly ElfLoad[], options: { xnum?: boolean } = {}): Uint8Array {
  const phnum = loads.length + 1;
  const phoff = 64;
  const shoff = options.xnum ? phoff + phnum * 56 : 0;
  let dataOff = phoff + phnum * 56 + (options.xnum ? 64 : 0);
  const offsets = loads.map((l) => {
    const o = dataOff;
    dataOff += l.data.length;
    return o;
  });
  const buf = new Uint8Array(dataOff);
  const v = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]); // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
  v.setUint16(0x10, 4, true); // ET_CORE
  v.setUint16(0x12, 62, true); // EM_X86_64
  v.setUint32(0x14, 1, true);
  v.setBigUint64(0x20, BigInt(phoff), true);
  v.setBigUint64(0x28, BigInt(shoff), true);
  v.setUint16(0x34, 64, true);
  v.setUint16(0x36, 56, true);
  v.setUint16(0x38, options.xnum ? 0xffff : phnum, true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, options.xnum ? 1 : 0, true);
  // PT_NOTE (4), empty.
  v.setUint32(phoff, 4, true);
  loads.forEach((l, i) => {
    const ph = phoff + (i + 1) * 56;
    v.setUint32(ph, 1, true); // PT_LOAD
    v.setUint32(ph + 4, 6, true);
    v.setBigUint64(ph + 0x08, BigInt(offsets[i]!), true);
    v.setBigUint64(ph + 0x10, BigInt(0xffff800000000000n + BigInt(l.paddr)), true); // a kernel VA, ignored
    v.setBigUint64(ph + 0x18, BigInt(l.paddr), true);
    v.setBigUint64(ph + 0x20, BigInt(l.data.length), true);
    v.setBigUint64(ph + 0x28, BigInt(l.memsz ?? l.data.length), true);
    buf.set(l.data, offsets[i]!);
  });
  if (options.xnum) v.setUint32(shoff + 0x2c, phnum, true); // sh_info of section 0 = real e_phnum
  return buf;
}

// A tiny snapshot-only backend for CLI tests ("flat"): one 8-byte entry per 4 KiB page at
// TABLE + (iova >> 12) * 8; bit 0 = valid, bit 1 = writable, bits 51:12 = the page's
// physical address. No imports: the test copies it next to its temp files as a plugin.
export const flatBackend = {
  name: "flat",
  description: "test-only flat page table",
  registerDefaults: { TABLE: 0n, ENABLE: 1n },
  create() {
    throw new Error("flat is snapshot-only");
  },
  fromRegisters(memory, regs) {
    const table = Number(regs.TABLE);
    const fault = (cls, name, code) => ({
      class: cls,
      recorded: code !== null,
      vendor: { vendor: "flat", code, name, fields: {} },
    });
    return {
      kind: "flat",
      name: "flat0",
      translate(_rid, _pasid, iova, access, out) {
        if (regs.ENABLE === 0n) {
          out.fault = fault("blocked", "DISABLED", null);
          return false;
        }
        const ea = table + Math.floor(iova / 4096) * 8;
        const lo = memory.read32(ea);
        const hi = memory.read32(ea + 4);
        if (lo === -1 || hi === -1) {
          out.fault = fault("walk-abort", "WALK_EABT", 3);
          return false;
        }
        if ((lo & 1) === 0) {
          out.fault = fault("translation", "NOT_PRESENT", 1);
          return false;
        }
        if (access & 2 && (lo & 2) === 0) {
          out.fault = fault("permission", "READ_ONLY", 2);
          return false;
        }
        out.pa = (hi & 0xfffff) * 2 ** 32 + (((lo >>> 12) << 12) >>> 0) + (iova % 4096);
        out.perm = lo & 2 ? 3 : 1;
        out.sizeLg2 = 12;
        out.fault = null;
        return true;
      },
      explain(_rid, _pasid, iova) {
        const index = Number(iova >> 12n);
        const ea = table + index * 8;
        const raw = memory.read32(ea) === -1 ? null : memory.read64(ea);
        return [
          {
            what: "flat table",
            address: ea,
            index,
            raw: raw === null ? [] : [`0x${raw.toString(16).padStart(16, "0")}`],
            fields: { V: raw === null ? false : (raw & 1n) === 1n },
            note: raw === null ? "bus error" : (raw & 1n) === 1n ? "page" : "fault: NOT_PRESENT",
          },
        ];
      },
      dump(rid) {
        return { table: `0x${table.toString(16)}`, rid: rid ?? null };
      },
      counters() {
        return { iotlbHits: 0, iotlbMisses: 0, configHits: 0, configMisses: 0, walks: 0, invalidations: 0 };
      },
    };
  },
};

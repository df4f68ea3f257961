/**
 * The built-in default scenario (`iommu-kit run` with no file): every backend and
 * every intent, with DMA successes and faults checked by expectations. Embedded in
 * code so the built binary finds it without reading package files.
 *
 * Tour: an SMMUv3 with a NIC (rid, pasid) and a GPU whose guest owns its whole CD
 * table (rid-all-pasids: a guest STE on a vIOMMU, nested over a stage-2 parent; the
 * GPU is vSID 0x7 to the guest, whose TLBI goes through the vIOMMU and whose event comes
 * back through a vEVENTQ with the vSID); a VT-d unit with an SSD (rid, pasid), an
 * accelerator with a guest first-stage table (nested) and a PRI device whose page fault
 * is read from a FAULT object, answered, and its DMA retried; two mediated devices: one
 * emulated (pin + read/write through the IOAS), one attached by a PASID its backend
 * assigns, issuing DMA through its parent.
 *
 * Guest structures are written as little-endian bytes at the physical address their
 * guest-physical (IPA) address maps to: the "guest" IOAS maps IPA [0, 2 MiB) to PA
 * GUEST_PA, so IPA x lives at PA GUEST_PA + x.
 */

import type { Scenario, StepDecl } from "./load.ts";

/** Its file name in reports. */
export const DEFAULT_SCENARIO_NAME = "<default scenario>";

/** Where guest RAM (IPA 0) lives. */
const GUEST_PA = 0x10000000n;

/** Hex text of 64-bit little-endian words. */
function le64(...words: bigint[]): string {
  let s = "";
  for (const w of words)
    for (let i = 0n; i < 8n; i++) s += ((w >> (8n * i)) & 0xffn).toString(16).padStart(2, "0");
  return s;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** Writes 64-bit words at guest IPA `ipa`. */
function guestWrite(ipa: bigint, words: bigint[], name: string): StepDecl {
  return { op: "mem.write", pa: hex(GUEST_PA + ipa), data: le64(...words), name };
}

// --- SMMUv3 guest structures (ARM IHI 0070; field positions as Linux's arm-smmu-v3.h).
// VMSAv8-64 4 KiB granule, 48-bit VA: L0 index VA[47:39], L1 VA[38:30], L2 VA[29:21], L3 VA[20:12].
const VMSA_TABLE = 0b11n; // table descriptor (levels 0-2)
// L3 page: bits[1:0] = 0b11, AttrIndx[4:2] = 0, AP[7:6] = 0b01 (read/write at EL1 and EL0), SH[9:8] = 0b11, AF[10].
const VMSA_PAGE = 0b11n | (0b01n << 6n) | (0b11n << 8n) | (1n << 10n);
// CD word 0: T0SZ[5:0] = 16, TG0[7:6] = 4K, IRGN0[9:8] = ORGN0[11:10] = WBWA, SH0[13:12] = ISH,
// EPD1[30], V[31], IPS[34:32] = 0b101 (48 bits), AA64[41], R[45], A[46], ASID[63:48].
function cdWord0(asid: bigint): bigint {
  return (
    16n |
    (1n << 8n) |
    (1n << 10n) |
    (3n << 12n) |
    (1n << 30n) |
    (1n << 31n) |
    (5n << 32n) |
    (1n << 41n) |
    (1n << 45n) |
    (1n << 46n) |
    (asid << 48n)
  );
}
const CD_TABLE = 0x1000n; // 16 CDs (S1CDMax = 4), 64 bytes each
// STE word 0: V[0], Config[3:1] (0b000 abort, 0b100 bypass, 0b101 stage 1), S1Fmt[5:4] = linear,
// S1ContextPtr[51:6], S1CDMax[63:59]. Word 1: S1DSS[1:0] = 0b10 (no-SSID traffic uses CD 0),
// S1CIR[3:2] = S1COR[5:4] = WBWA, S1CSH[7:6] = ISH.
const STE_S1 = 1n | (0b101n << 1n) | CD_TABLE | (4n << 59n);
const STE_S1_W1 = 0b10n | (1n << 2n) | (1n << 4n) | (3n << 6n);
const STE_ABORT = 1n;
// CMD_TLBI_NH_ALL (opcode 0x10): the guest's "invalidate all stage-1 entries".
const CMD_TLBI_NH_ALL = 0x10n;
// The GPU's virtual StreamID: the guest's name for it in STEs, commands and events.
const GPU_VSID = 0x7n;
// The guest's F_TRANSLATION record (IHI 0070 7.3.10) of PASID 3 at VA + 0x1000, as the
// vEVENTQ returns it: EventID 0x10 [7:0], SSV [11], SubstreamID 3 [31:12], StreamID =
// the vSID [63:32]; RnW [99] (a read), CLASS [105:104] = IN (0b10); InputAddr [191:128].
const GPU_EVENT = le64(
  0x10n | (1n << 11n) | (3n << 12n) | (GPU_VSID << 32n),
  (1n << 35n) | (0b10n << 40n),
  0x40001000n,
  0n,
);

// --- VT-d first-stage table (VT-d spec 3.6, 9.7-9.9): P[0], R/W[1], U/S[2], address [51:12].
// 4-level: PML4 index VA[47:39], PDPT VA[38:30], PD VA[29:21], PT VA[20:12].
const FS_PRESENT_RW_USER = 0b111n;

const VA = 0x40000000n; // L0/PML4 index 0, L1/PDPT index 1, L2/PD index 0, L3/PT index 0

const steps: StepDecl[] = [
  {
    op: "mem.write",
    pa: "0x1000000",
    data: "00112233445566778899aabbccddeeff",
    name: "host data at PA 0x1000000",
  },
  { op: "ioas.alloc", as: "dma" },
  {
    op: "ioas.map",
    ioas: "dma",
    iova: "0x100000",
    length: "0x10000",
    pa: "0x1000000",
    prot: "rw",
    expect: { iova: "0x100000" },
  },
  {
    op: "ioas.map",
    ioas: "dma",
    iova: "0x200000",
    length: "0x1000",
    pa: "0x1100000",
    prot: "r",
    expect: { iova: "0x200000" },
  },

  // ---- SMMUv3: rid and pasid.
  { op: "hw_info", device: "nic", expect: { type: "arm-smmuv3", maxPasidLog2: 20 } },
  { op: "hwpt.alloc", device: "nic", pt: "dma", flags: ["pasid"], as: "nic_pt" },
  { op: "attach", device: "nic", target: "rid", pt: "nic_pt", expect: { hwpt: "nic_pt" } },
  {
    op: "dma",
    device: "nic",
    iova: "0x100000",
    length: 16,
    name: "nic reads",
    expect: { pa: "0x1000000", data: "00112233445566778899aabbccddeeff" },
  },
  {
    op: "dma",
    device: "nic",
    iova: "0x100010",
    access: "write",
    data: "cafe",
    name: "nic writes",
    expect: { pa: "0x1000010" },
  },
  { op: "mem.read", pa: "0x1000010", length: 2, expect: { data: "cafe" } },
  {
    op: "dma",
    device: "nic",
    iova: "0x200000",
    access: "write",
    data: "00",
    name: "nic writes a read-only page",
    expect: { fault: "F_PERMISSION" },
  },
  {
    op: "dma",
    device: "nic",
    iova: "0x300000",
    length: 4,
    name: "nic reads an unmapped IOVA",
    expect: { fault: { name: "F_TRANSLATION", code: 0x10, class: "translation" } },
  },
  { op: "attach", device: "nic", target: { pasid: 1 }, pt: "nic_pt", name: "nic pasid 1" },
  {
    op: "dma",
    device: "nic",
    pasid: 1,
    iova: "0x100000",
    length: 4,
    expect: { pa: "0x1000000", data: "00112233" },
  },
  { op: "detach", device: "nic", target: { pasid: 1 } },
  {
    op: "dma",
    device: "nic",
    pasid: 1,
    iova: "0x100000",
    length: 4,
    name: "detached pasid",
    expect: { fault: true },
  },
  {
    op: "attach",
    device: "nic",
    target: "emulated",
    pt: "dma",
    name: "an intent the device does not list",
    expect: { error: "EOPNOTSUPP" },
  },

  // ---- SMMUv3: rid-all-pasids, the guest owns the CD table (user STE over a stage-2 parent).
  { op: "ioas.alloc", as: "guest" },
  {
    op: "ioas.map",
    ioas: "guest",
    iova: "0",
    length: "0x200000",
    pa: hex(GUEST_PA),
    prot: "rw",
    name: "guest RAM: IPA [0, 2 MiB)",
  },
  guestWrite(CD_TABLE, [cdWord0(1n), 0x2000n, 0n, 0xffn], "CD 0: ASID 1, TTB0 = IPA 0x2000"),
  guestWrite(CD_TABLE + 3n * 64n, [cdWord0(3n), 0x6000n, 0n, 0xffn], "CD 3: ASID 3, TTB0 = IPA 0x6000"),
  guestWrite(0x2000n, [0x3000n | VMSA_TABLE], "CD 0 L0[0] -> L1"),
  guestWrite(0x3000n + 8n, [0x4000n | VMSA_TABLE], "CD 0 L1[1] -> L2"),
  guestWrite(0x4000n, [0x5000n | VMSA_TABLE], "CD 0 L2[0] -> L3"),
  guestWrite(0x5000n, [0x10000n | VMSA_PAGE], "CD 0 L3[0] -> IPA 0x10000"),
  guestWrite(0x6000n, [0x7000n | VMSA_TABLE], "CD 3 L0[0] -> L1"),
  guestWrite(0x7000n + 8n, [0x8000n | VMSA_TABLE], "CD 3 L1[1] -> L2"),
  guestWrite(0x8000n, [0x9000n | VMSA_TABLE], "CD 3 L2[0] -> L3"),
  guestWrite(0x9000n, [0x11000n | VMSA_PAGE], "CD 3 L3[0] -> IPA 0x11000"),
  { op: "mem.write", pa: hex(GUEST_PA + 0x10000n), data: "a0a0a0a0", name: "guest page IPA 0x10000" },
  { op: "mem.write", pa: hex(GUEST_PA + 0x11000n), data: "b3b3b3b3", name: "guest page IPA 0x11000" },
  { op: "hwpt.alloc", device: "gpu", pt: "guest", flags: ["nest_parent"], as: "gpu_s2" },
  { op: "viommu.alloc", device: "gpu", hwpt: "gpu_s2", type: "arm-smmuv3", as: "gpu_viommu" },
  {
    op: "vdevice.alloc",
    viommu: "gpu_viommu",
    device: "gpu",
    virtId: hex(GPU_VSID),
    as: "gpu_vdev",
    name: "the guest knows the gpu as vSID 0x7",
  },
  { op: "veventq.alloc", viommu: "gpu_viommu", type: "arm-smmuv3", depth: 8, as: "gpu_events" },
  {
    op: "hwpt.alloc",
    device: "gpu",
    pt: "gpu_viommu",
    data: { ste: [hex(STE_S1), hex(STE_S1_W1)] },
    as: "gpu_vste",
    name: "guest STE through the vIOMMU",
  },
  { op: "attach", device: "gpu", target: "rid-all-pasids", pt: "gpu_vste", expect: { hwpt: "gpu_vste" } },
  {
    op: "dma",
    device: "gpu",
    iova: hex(VA),
    length: 4,
    name: "gpu without PASID: CD 0",
    expect: { pa: hex(GUEST_PA + 0x10000n), data: "a0a0a0a0" },
  },
  {
    op: "dma",
    device: "gpu",
    pasid: 3,
    iova: hex(VA),
    length: 4,
    name: "gpu PASID 3: CD 3",
    expect: { pa: hex(GUEST_PA + 0x11000n), data: "b3b3b3b3" },
  },
  {
    op: "dma",
    device: "gpu",
    pasid: 3,
    iova: hex(VA + 0x1000n),
    length: 4,
    name: "gpu PASID 3, unmapped in the guest table",
    expect: { fault: "F_TRANSLATION" },
  },
  {
    op: "veventq.read",
    veventq: "gpu_events",
    name: "the guest's event, with the vSID in place of the StreamID",
    expect: { events: [{ flags: 0, sequence: 0, data: GPU_EVENT }] },
  },
  guestWrite(0x5000n, [0x11000n | VMSA_PAGE], "the guest remaps CD 0's page to IPA 0x11000"),
  {
    op: "dma",
    device: "gpu",
    iova: hex(VA),
    length: 4,
    name: "still the old page: the IOTLB holds it until the guest's TLBI",
    expect: { pa: hex(GUEST_PA + 0x10000n), data: "a0a0a0a0" },
  },
  {
    op: "invalidate",
    hwpt: "gpu_viommu",
    data: [[hex(CMD_TLBI_NH_ALL), "0x0"]],
    name: "guest TLBI through the vIOMMU (the VMID applied)",
    expect: { handled: 1 },
  },
  {
    op: "dma",
    device: "gpu",
    iova: hex(VA),
    length: 4,
    name: "fresh after CMD_TLBI_NH_ALL",
    expect: { pa: hex(GUEST_PA + 0x11000n) },
  },
  {
    op: "hwpt.alloc",
    device: "gpu",
    pt: "gpu_viommu",
    data: { ste: [hex(STE_ABORT), "0x0"] },
    as: "gpu_abort",
  },
  { op: "replace", device: "gpu", target: "rid-all-pasids", pt: "gpu_abort", name: "guest STE: abort" },
  {
    op: "dma",
    device: "gpu",
    iova: hex(VA),
    length: 4,
    name: "aborted by the guest STE",
    expect: { fault: "blocked" },
  },

  // ---- VT-d: rid and pasid.
  { op: "hw_info", device: "ssd", expect: { type: "intel-vtd", maxPasidLog2: 20 } },
  { op: "hwpt.alloc", device: "ssd", pt: "dma", flags: ["pasid"], as: "ssd_pt" },
  { op: "attach", device: "ssd", target: "rid", pt: "ssd_pt" },
  {
    op: "dma",
    device: "ssd",
    iova: "0x100000",
    length: 4,
    name: "ssd reads",
    expect: { pa: "0x1000000", data: "00112233" },
  },
  {
    op: "dma",
    device: "ssd",
    iova: "0x200000",
    access: "write",
    data: "00",
    name: "ssd writes a read-only page",
    expect: { fault: "permission" },
  },
  {
    op: "dma",
    device: "ssd",
    iova: "0x300000",
    length: 4,
    name: "ssd reads an unmapped IOVA",
    expect: { fault: "translation" },
  },
  { op: "attach", device: "ssd", target: { pasid: 7 }, pt: "ssd_pt", name: "ssd pasid 7" },
  {
    op: "dma",
    device: "ssd",
    pasid: 7,
    iova: "0x100004",
    length: 4,
    expect: { pa: "0x1000004", data: "44556677" },
  },
  {
    op: "attach",
    device: "ssd",
    target: "rid-all-pasids",
    pt: "ssd_pt",
    name: "VT-d has no rid-all-pasids",
    expect: { error: "EOPNOTSUPP" },
  },

  // ---- VT-d: nested first stage (guest table) over a second-stage parent.
  guestWrite(0x20000n, [0x21000n | FS_PRESENT_RW_USER], "PML4[0] -> PDPT"),
  guestWrite(0x21000n + 8n, [0x22000n | FS_PRESENT_RW_USER], "PDPT[1] -> PD"),
  guestWrite(0x22000n, [0x23000n | FS_PRESENT_RW_USER], "PD[0] -> PT"),
  guestWrite(0x23000n, [0x10000n | FS_PRESENT_RW_USER], "PT[0] -> IPA 0x10000"),
  { op: "hwpt.alloc", device: "accel", pt: "guest", flags: ["nest_parent"], as: "accel_s2" },
  {
    op: "hwpt.alloc",
    device: "accel",
    pt: "accel_s2",
    data: { pgtblAddr: "0x20000", addrWidth: 48 },
    as: "accel_fs",
  },
  { op: "attach", device: "accel", target: "rid", pt: "accel_fs" },
  {
    op: "dma",
    device: "accel",
    iova: hex(VA),
    length: 4,
    name: "accel through the guest first stage",
    expect: { pa: hex(GUEST_PA + 0x10000n) },
  },
  {
    op: "dma",
    device: "accel",
    iova: hex(VA + 0x1000n),
    length: 4,
    name: "accel: not present in the guest table",
    expect: { fault: "translation" },
  },
  guestWrite(0x23000n, [0x11000n | FS_PRESENT_RW_USER], "the guest remaps PT[0] to IPA 0x11000"),
  {
    op: "dma",
    device: "accel",
    iova: hex(VA),
    length: 4,
    name: "still the old page: the IOTLB holds it until the guest's invalidation",
    expect: { pa: hex(GUEST_PA + 0x10000n) },
  },
  { op: "invalidate", hwpt: "accel_fs", data: [{ addr: hex(VA), npages: 1 }], expect: { handled: 1 } },
  {
    op: "dma",
    device: "accel",
    iova: hex(VA),
    length: 4,
    name: "accel after the guest's invalidation",
    expect: { pa: hex(GUEST_PA + 0x11000n) },
  },

  // ---- VT-d: a recoverable page fault (PRI page request), answered and retried.
  { op: "fault.alloc", as: "pf" },
  { op: "hwpt.alloc", device: "pri", pt: "dma", faultQueue: "pf", as: "pri_pt" },
  { op: "attach", device: "pri", target: "rid", pt: "pri_pt" },
  {
    op: "dma",
    device: "pri",
    iova: "0x400010",
    length: 4,
    name: "pri reads an unmapped IOVA: a page request, the DMA is held",
    expect: { fault: { class: "translation", recorded: false }, pending: true, cookie: 1 },
  },
  {
    op: "fault.read",
    fault: "pf",
    name: "the page request (iommu_hwpt_pgfault: LAST_PAGE, READ)",
    expect: {
      faults: [
        { flags: 2, devId: "pri", pasid: 0, grpid: 0, perm: 1, addr: "0x400000", length: 0, cookie: 1 },
      ],
    },
  },
  { op: "ioas.map", ioas: "dma", iova: "0x400000", length: "0x1000", pa: "0x1000000", prot: "rw" },
  {
    op: "fault.respond",
    fault: "pf",
    cookie: 1,
    code: "success",
    name: "answered success: the held DMA is retried and lands",
    expect: { results: [{ pa: "0x1000010", data: "cafe0000" }] },
  },

  // ---- mdev: emulated (software access through the IOAS) and PASID through a parent.
  { op: "attach", device: "vnic", target: "emulated", pt: "dma" },
  { op: "access.rw", device: "vnic", iova: "0x100000", length: 4, expect: { data: "00112233" } },
  {
    op: "access.rw",
    device: "vnic",
    iova: "0x100ffe",
    write: true,
    data: "1234",
    name: "vnic writes across a page edge",
  },
  {
    op: "access.pin",
    device: "vnic",
    iova: "0x100000",
    length: "0x2000",
    expect: { pages: ["0x1000000", "0x1001000"] },
  },
  { op: "access.unpin", device: "vnic", iova: "0x100000", length: "0x2000" },
  { op: "hwpt.alloc", device: "vssd", pt: "dma", flags: ["pasid"], as: "vssd_pt" },
  {
    op: "attach",
    device: "vssd",
    target: { pasid: "auto" },
    pt: "vssd_pt",
    name: "vssd: the mdev backend picks the PASID",
    expect: { pasid: 1 },
  },
  {
    op: "dma",
    device: "vssd",
    iova: "0x100000",
    length: 4,
    name: "vssd DMA leaves through ssd with its PASID",
    expect: { pa: "0x1000000" },
  },
  {
    op: "faults.read",
    name: "every host fault was delivered to its device's queue, oldest first (the guest's went to its vEVENTQ)",
    expect: {
      faults: [
        {
          device: "nic",
          pasid: null,
          iova: "0x200000",
          access: "write",
          name: "F_PERMISSION",
          recorded: true,
        },
        { device: "nic", pasid: null, iova: "0x300000", access: "read", name: "F_TRANSLATION" },
        { device: "nic", pasid: 1, iova: "0x100000" },
        { device: "gpu", pasid: null, class: "blocked", code: null, recorded: false },
        { device: "ssd", iova: "0x200000", access: "write", class: "permission", vendor: "intel-vtd" },
        { device: "ssd", iova: "0x300000", class: "translation" },
        { device: "accel", iova: hex(VA + 0x1000n), class: "translation" },
      ],
    },
  },
  { op: "faults.read", name: "the queue is empty after a read", expect: { faults: [] } },
];

/** Every backend and every intent, with DMA successes and faults checked by expectations. */
export const DEFAULT_SCENARIO: Scenario = {
  name: "iommu-kit tour: SMMUv3, VT-d and mediated devices, every intent",
  iommus: [
    { name: "smmu0", backend: "smmuv3" },
    { name: "dmar0", backend: "vtd" },
    { name: "mdev", backend: "mdev-emulated" },
  ],
  devices: [
    { name: "nic", iommu: "smmu0", rid: "0x10", pasidBits: 20 },
    { name: "gpu", iommu: "smmu0", rid: "0x20", pasidBits: 20 },
    { name: "ssd", iommu: "dmar0", rid: "0x100", pasidBits: 20 },
    { name: "accel", iommu: "dmar0", rid: "0x200", pasidBits: 20 },
    { name: "pri", iommu: "dmar0", rid: "0x300", pasidBits: 20, ats: true, pri: true },
    { name: "vnic", parent: "nic", iommu: "mdev" },
    { name: "vssd", parent: "ssd", iommu: "mdev" },
  ],
  steps,
};

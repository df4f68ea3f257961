/**
 * What the driver does with each event record it consumes (Linux 6.15
 * arm_smmu_handle_event, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c): only C_BAD_STE,
 * F_STREAM_DISABLED, C_BAD_SUBSTREAMID, C_BAD_CD, F_TRANSLATION, F_ADDR_SIZE, F_ACCESS
 * and F_PERMISSION of a known StreamID are handled; a stalled transaction's record
 * (STALL = 1) becomes an I/O page fault (iommu_report_device_fault: the device's
 * outstanding page requests, which `pageResponse` answers with CMD_RESUME as
 * arm_smmu_page_response does); any other of them, not at stage 2 (S2 = 0), of a device
 * whose nested attach found a vDEVICE (master->vmaster) goes to that vIOMMU as the guest
 * sees it (arm_vmaster_report_event). Every record stays in the driver's log as well.
 */

import { CmdOp, encodeCommand, ResumeResp } from "./format/command.ts";
import { EventId } from "./format/event.ts";

/** What arm_smmu_attach_commit_vmaster leaves on a device: the vIOMMU and the vSID at attach. */
export interface Vmaster {
  readonly viommu: { report(words: readonly bigint[], vsid: number): void };
  readonly vsid: number;
}

/** The per-device state the handler reads and updates. */
export interface EventMaster {
  readonly vmaster: Vmaster | null;
  /** STAGs of stall records reported and not yet answered (the iopf groups of the device). */
  readonly pending: Set<number>;
}

/** The event IDs arm_smmu_handle_event handles (others return -EOPNOTSUPP and are only logged). */
const HANDLED: ReadonlySet<number> = new Set<number>([
  EventId.C_BAD_STE,
  EventId.F_STREAM_DISABLED,
  EventId.C_BAD_SUBSTREAMID,
  EventId.C_BAD_CD,
  EventId.F_TRANSLATION,
  EventId.F_ADDR_SIZE,
  EventId.F_ACCESS,
  EventId.F_PERMISSION,
]);

/** arm_smmu_handle_event for the raw record `w`; `find` is arm_smmu_find_master. */
export function handleEvent(w: readonly bigint[], find: (sid: number) => EventMaster | undefined): void {
  const w0 = w[0]!;
  const w1 = w[1]!;
  if (!HANDLED.has(Number(w0 & 0xffn))) return;
  const master = find(Number(w0 >> 32n));
  if (master === undefined) return;
  if (((w1 >> 31n) & 1n) === 1n) {
    master.pending.add(Number(w1 & 0xffffn)); // EVTQ_1_STALL: grpid = EVTQ_1_STAG
    return;
  }
  if (master.vmaster !== null && ((w1 >> 39n) & 1n) === 0n)
    master.vmaster.viommu.report(w, master.vmaster.vsid);
}

/**
 * The CMD_RESUME of arm_smmu_page_response: StreamID = master->streams[0].id, STAG =
 * grpid, RESP = Retry for IOMMU_PAGE_RESP_SUCCESS, Abort for INVALID (4.7.1).
 */
export function resumeCommand(sid: number, stag: number, code: "success" | "invalid"): [bigint, bigint] {
  return encodeCommand({
    op: CmdOp.RESUME,
    sid,
    stag,
    resp: code === "success" ? ResumeResp.RETRY : ResumeResp.ABORT,
  });
}

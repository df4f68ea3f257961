/**
 * Fault records: the scratch a failing request is described in while the configuration
 * and walk rooms unwind, and what becomes of it: the event record (ARM IHI 0070 7.3,
 * encoded by `format/event.ts`) the event queue gets, and core's `Fault` the caller gets.
 * The rooms only set the scratch (no allocation on a fault until it is raised); the
 * fast path raises it once, at the end.
 */

import type { Fault, FaultClass, PageRequest } from "@iommu-kit/core";
import { Access, makeFault, Perm } from "@iommu-kit/core";
import { EVENT_NAMES, EventId, encodeEvent } from "../format/event.ts";
import { wordsToBytes } from "../format/fields.ts";
import { hex } from "./words.ts";

/** Core's class of an event (F_* translation faults by kind; C_BAD_* are configuration errors). */
function classOf(id: number): FaultClass {
  switch (id) {
    case EventId.F_TRANSLATION:
      return "translation";
    case EventId.F_PERMISSION:
      return "permission";
    case EventId.F_ADDR_SIZE:
      return "address-size";
    case EventId.F_ACCESS:
      return "access-flag";
    case EventId.F_STE_FETCH:
    case EventId.F_CD_FETCH:
    case EventId.F_WALK_EABT:
      return "walk-abort";
    case EventId.F_STREAM_DISABLED:
      return "blocked";
    default:
      return "bad-config";
  }
}

/** Event CLASS [35:34] names (7.3.12: CD fetch, TT fetch, input address). */
const CLASS_NAMES = ["CD", "TT", "IN", "RES"];

/** The fault of the request in flight: who asked (set first), then what failed. */
export class FaultScratch {
  /** Event id (EventId). */
  id = 0;
  /** S2 [39]: the fault is at stage 2. */
  s2 = 0;
  /** CLASS (EventClass). */
  cls = 0;
  /** IPA or fetch address of the record. */
  addr = 0;
  /** Whether the event is recorded (S1/S2 R bits, CR2.RECINVSID). */
  record = false;
  /** Reported as "blocked" (a terminated stream) whatever the event. */
  blocked = false;
  sid = 0;
  ssid = -1;
  input = 0;
  inputBig: bigint | null = null;
  access = 0;

  /** Sets what failed; returns false so a walk can `return f.set(...)`. */
  set(id: number, s2: number, cls: number, addr: number, record: boolean): false {
    this.id = id;
    this.s2 = s2;
    this.cls = cls;
    this.addr = addr;
    this.record = record;
    this.blocked = false;
    return false;
  }
}

/**
 * The event record (four 64-bit words) of the scratch; `stag` >= 0 makes it the record of
 * a stalled transaction (STALL [95] = 1, STAG [79:64], 7.3.10-7.3.13).
 */
export function eventWords(f: FaultScratch, stag = -1): bigint[] {
  const id = f.id;
  const withAccess =
    (id >= EventId.F_TRANSLATION && id <= EventId.F_PERMISSION) || id === EventId.F_WALK_EABT;
  const a = f.access;
  const ssv = f.ssid >= 0 ? 1 : 0;
  return encodeEvent({
    id,
    streamId: f.sid,
    ssv,
    substreamId: ssv ? f.ssid : 0,
    stall: stag >= 0 ? 1 : 0,
    stag: Math.max(stag, 0),
    rnw: withAccess ? (a & Access.WRITE ? 0 : 1) : 0,
    ind: withAccess ? (a & Access.EXEC ? 1 : 0) : 0,
    pnu: withAccess ? (a & Access.PRIV ? 1 : 0) : 0,
    s2: withAccess ? f.s2 : 0,
    cls: withAccess ? f.cls : 0,
    inputAddr: withAccess ? (f.inputBig ?? BigInt(f.input)) : 0n,
    addr: BigInt(f.addr),
  });
}

/**
 * Core's fault for the scratch whose record is `words` (`recorded`: it reached the event
 * queue); a stalled transaction's (`stag` >= 0) carries STALL / STAG and its page request.
 */
export function faultOf(
  f: FaultScratch,
  words: readonly bigint[],
  recorded: boolean,
  stag = -1,
  pageRequest?: PageRequest,
): Fault {
  const id = f.id;
  const translationClass = id >= EventId.F_TRANSLATION && id <= EventId.F_PERMISSION;
  const walkEabt = id === EventId.F_WALK_EABT;
  const a = f.access;
  const input = f.inputBig ?? BigInt(f.input);
  const ssv = f.ssid >= 0 ? 1 : 0;
  const fields: Record<string, string | number | bigint | boolean | null> = {
    StreamID: f.sid,
    SSV: ssv,
    SubstreamID: ssv ? f.ssid : 0,
  };
  if (stag >= 0) {
    fields.STALL = 1;
    fields.STAG = stag;
  }
  if (translationClass || walkEabt) {
    fields.RnW = a & Access.WRITE ? 0 : 1;
    fields.InD = a & Access.EXEC ? 1 : 0;
    fields.PnU = a & Access.PRIV ? 1 : 0;
    fields.S2 = f.s2;
    fields.CLASS = CLASS_NAMES[f.cls]!;
    fields.InputAddr = hex(input);
  }
  if (id === EventId.F_STE_FETCH || id === EventId.F_CD_FETCH || walkEabt) fields.FetchAddr = hex(f.addr);
  else if (translationClass && f.s2) fields.IPA = hex(f.addr - (f.addr % 4096));
  return makeFault(
    f.blocked ? "blocked" : classOf(id),
    recorded,
    {
      vendor: "arm-smmuv3",
      code: id,
      name: EVENT_NAMES[id] ?? `EVENT_${hex(id)}`,
      fields,
      raw: wordsToBytes(words),
    },
    pageRequest,
  );
}

/**
 * The page request of a stalled transaction, as arm_smmu_handle_event builds it from the
 * record (iommu_fault_page_request: grpid = STAG, LAST_PAGE always, PASID when SSV; perm
 * READ if RnW else WRITE, EXEC if InD, PRIV if PnU) with the address page aligned.
 */
export function pageRequestOf(f: FaultScratch, stag: number): PageRequest {
  const a = f.access;
  const input = f.inputBig === null ? f.input : Number(f.inputBig);
  return {
    rid: f.sid,
    pasid: f.ssid,
    addr: input - (input % 4096),
    perm: (a & Access.WRITE ? Perm.W : Perm.R) | (a & Access.EXEC ? Perm.X : 0),
    priv: (a & Access.PRIV) !== 0,
    grpid: stag,
    last: true,
  };
}

/** A fault with no event (GBPA abort, STE Config abort): `name` says which. */
export function blockedFault(f: FaultScratch, name: string): Fault {
  return makeFault("blocked", false, {
    vendor: "arm-smmuv3",
    code: null,
    name,
    fields: { StreamID: f.sid, SSV: f.ssid >= 0 ? 1 : 0, SubstreamID: Math.max(f.ssid, 0) },
  });
}

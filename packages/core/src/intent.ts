/**
 * Attach intents: the founding idea of iommu-kit. Attaching a page table says, with
 * no guessing from argument shapes, what it serves (DESIGN.md, "The idea"):
 *
 * | intent           | serves                                                        |
 * |------------------|---------------------------------------------------------------|
 * | `rid`            | DMA without a PASID (requester ID / StreamID alone)           |
 * | `pasid`          | DMA tagged with one PASID                                     |
 * | `rid-all-pasids` | the RID and every PASID: the user owns the whole PASID/CD     |
 * |                  | table (SMMUv3 STE.S1ContextPtr nested over stage 2)           |
 * | `emulated`       | no hardware walk: software reads the emulated page table      |
 *
 * (Jason Gunthorpe, LKML 9 Dec 2021, "Re: [RFC v16 1/9] iommu: Introduce
 * attach/detach_pasid_table API".)
 */

/** The four intent kinds. */
export type IntentKind = "rid" | "pasid" | "rid-all-pasids" | "emulated";

/** Every intent kind, in the order of DESIGN's table. */
export const INTENT_KINDS: readonly IntentKind[] = ["rid", "pasid", "rid-all-pasids", "emulated"];

/** Attach to the RID: DMA without a PASID. */
export interface RidIntent {
  readonly kind: "rid";
}
/**
 * Attach to one PASID. `pasid` is a number for devices whose caller picks the PASID,
 * or `"auto"` for devices whose backend assigns it (a mediated device: the attach
 * result reports the PASID chosen). Which one a device takes is in its capabilities
 * (`pasidAssignment`).
 */
export interface PasidIntent {
  readonly kind: "pasid";
  readonly pasid: number | "auto";
}
/** Attach to the RID and every PASID (the user owns everything below the STE). */
export interface RidAllPasidsIntent {
  readonly kind: "rid-all-pasids";
}
/** Software access through the emulated page table (mediated devices). */
export interface EmulatedIntent {
  readonly kind: "emulated";
}

/** What an attached page table serves. */
export type AttachIntent = RidIntent | PasidIntent | RidAllPasidsIntent | EmulatedIntent;

/** Constructors for intents. */
export const Intent: {
  readonly rid: RidIntent;
  readonly ridAllPasids: RidAllPasidsIntent;
  readonly emulated: EmulatedIntent;
  readonly autoPasid: PasidIntent;
  pasid(pasid: number): PasidIntent;
} = {
  rid: { kind: "rid" },
  ridAllPasids: { kind: "rid-all-pasids" },
  emulated: { kind: "emulated" },
  autoPasid: { kind: "pasid", pasid: "auto" },
  pasid: (pasid: number): PasidIntent => ({ kind: "pasid", pasid }),
};

/** Human-readable form: "rid", "pasid 5", "pasid auto", "rid-all-pasids", "emulated". */
export function intentString(intent: AttachIntent): string {
  return intent.kind === "pasid" ? `pasid ${intent.pasid}` : intent.kind;
}

/** True when two intents name the same attach point (same kind, same PASID). */
export function sameIntent(a: AttachIntent, b: AttachIntent): boolean {
  return a.kind === b.kind && (a.kind !== "pasid" || (b.kind === "pasid" && a.pasid === b.pasid));
}

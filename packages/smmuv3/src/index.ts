/**
 * @iommu-kit/smmuv3: an ARM SMMUv3 model (ARM IHI 0070) behind core's backend contract:
 * a bit-faithful hardware half (registers, stream and CD tables, VMSAv8-64 walks,
 * command and event queues, IOTLB and configuration cache) and a driver half that
 * programs it as Linux's arm-smmu-v3 does.
 */

export { MSI_IOVA_BASE, SmmuV3Backend, smmuv3Backend } from "./backend.ts";
export type { SmmuDomainHost } from "./domain.ts";
export { SmmuDomain, SmmuPagingDomain } from "./domain.ts";
export type { EventMaster, Vmaster } from "./events.ts";
export { handleEvent, resumeCommand } from "./events.ts";
export { CD_FIELDS, decodeCd, decodeL1Cd, encodeCd, encodeL1Cd, TG0_LG2, TG1_LG2 } from "./format/cd.ts";
export type { Command } from "./format/command.ts";
export {
  CMD_NAMES,
  CmdError,
  CmdOp,
  decodeCommand,
  decodeCommandHalves,
  encodeCommand,
  ResumeResp,
} from "./format/command.ts";
export type { EventRecord } from "./format/event.ts";
export { decodeEvent, EVENT_NAMES, EventClass, EventId, encodeEvent } from "./format/event.ts";
export type { FieldSpec, FieldValues } from "./format/fields.ts";
export { bytesToWords, fromHex, packFields, toHex, unpackFields, wordsToBytes } from "./format/fields.ts";
export type { LpaeFormatSpec, PteFields } from "./format/lpae-pte.ts";
export {
  blockAllowed,
  decodePte,
  encodeLeafPte,
  encodeTablePte,
  levelShift,
  lpaeFormat,
  lpaeGeometry,
  Pte,
} from "./format/lpae-pte.ts";
export {
  decodeL1Std,
  decodeSte,
  encodeL1Std,
  encodeSte,
  S1Dss,
  S1Fmt,
  STE_FIELDS,
  SteConfig,
} from "./format/ste.ts";
export type { HwCounters, RegisterValues, SmmuHw } from "./hardware.ts";
export { capabilitiesOf, domainFormats, hwInfo } from "./hw-info.ts";
export { SmmuTlb, tlbTag } from "./internal/iotlb.ts";
export type { NestedOwner } from "./nested.ts";
export {
  nestedSteWords,
  SmmuNestedDomain,
  STE0_NESTING_ALLOWED,
  STE1_NESTING_ALLOWED,
  validateVste,
} from "./nested.ts";
export type { SmmuV3Config } from "./options.ts";
export { registersFor, SMMUV3_CONFIG_SCHEMA } from "./options.ts";
export { StallUnit } from "./stall.ts";
export type { ViommuHost } from "./viommu.ts";
export { ARM_SMMUV3, createViommu, SmmuViommu } from "./viommu.ts";

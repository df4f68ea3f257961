/**
 * The JSON Schema of scenario files (draft-07 with $defs, as ajv compiles it). The
 * published copy is `schema/scenario.schema.json`, generated from {@link scenarioSchema}
 * with the built-in backends' `configSchema`s (a test keeps it in step). Each step is
 * checked against the arguments of its `op` (if/then per op), so a validation error
 * names the offending field, e.g. `/steps/3/length`.
 */

/** A JSON Schema object. */
export type JsonSchema = Readonly<Record<string, unknown>>;

const num: JsonSchema = { $ref: "#/$defs/number" };
const name: JsonSchema = { $ref: "#/$defs/name" };
const prot: JsonSchema = {
  enum: ["r", "w", "rw", "x", "rx", "wx", "rwx"],
  description: "Mapping permissions.",
};

/** The arguments of every op (besides op, as, expect, name, comment). */
export const OP_ARGS: Readonly<
  Record<string, { required: readonly string[]; properties: Record<string, JsonSchema>; description: string }>
> = {
  "ioas.alloc": {
    description: "IOMMU_IOAS_ALLOC: a new IO address space named by `as`.",
    required: ["as"],
    properties: {},
  },
  "ioas.map": {
    description: "IOMMU_IOAS_MAP: maps [pa, pa+length) at iova (omitted: allocated). Result: iova.",
    required: ["ioas", "length", "pa"],
    properties: { ioas: name, iova: num, length: num, pa: num, prot },
  },
  "ioas.unmap": {
    description:
      "IOMMU_IOAS_UNMAP: must cover whole areas; all: true unmaps everything. Result: length unmapped.",
    required: ["ioas"],
    properties: { ioas: name, iova: num, length: num, all: { type: "boolean" } },
  },
  "ioas.copy": {
    description: "IOMMU_IOAS_COPY: maps the pages under [srcIova, +length) of src into dst. Result: iova.",
    required: ["src", "srcIova", "dst", "length"],
    properties: { src: name, srcIova: num, dst: name, dstIova: num, length: num, prot },
  },
  "ioas.iova_ranges": {
    description: "IOMMU_IOAS_IOVA_RANGES. Result: ranges [{start, last}], alignment.",
    required: ["ioas"],
    properties: { ioas: name },
  },
  "ioas.allow_iovas": {
    description: "IOMMU_IOAS_ALLOW_IOVAS: the IOVA ranges that must stay usable.",
    required: ["ioas", "ranges"],
    properties: { ioas: name, ranges: { type: "array", items: { $ref: "#/$defs/range" } } },
  },
  "hwpt.alloc": {
    description:
      "IOMMU_HWPT_ALLOC: paging (pt = IOAS) or nested (pt = nest-parent HWPT or, on SMMUv3, a vIOMMU; " +
      "data = vendor data). faultQueue (a fault.alloc object) receives its page requests.",
    required: ["as", "device", "pt"],
    properties: {
      device: name,
      pt: name,
      faultQueue: name,
      flags: {
        type: "array",
        items: { enum: ["nest_parent", "dirty_tracking", "pasid"] },
        uniqueItems: true,
      },
      data: {
        description:
          "Vendor data of a nested HWPT. SMMUv3: {ste: [w0, w1]} (the guest STE's first two 64-bit words). " +
          "VT-d: {flags?: SRE=1|EAFE=2|WPE=4, pgtblAddr, addrWidth: 48|57}.",
      },
    },
  },
  attach: {
    description: "Attaches pt (IOAS or HWPT) to the device's target. Result: hwpt (name), pasid (mdev).",
    required: ["device", "target", "pt"],
    properties: { device: name, target: { $ref: "#/$defs/target" }, pt: name },
  },
  replace: {
    description:
      "Replaces what serves the target; a failed replace keeps the old table. Result: hwpt, pasid.",
    required: ["device", "target", "pt"],
    properties: { device: name, target: { $ref: "#/$defs/target" }, pt: name },
  },
  detach: {
    description: "Detaches the target; it is blocked afterwards.",
    required: ["device", "target"],
    properties: { device: name, target: { $ref: "#/$defs/target" } },
  },
  hw_info: {
    description: "IOMMU_GET_HW_INFO. Result: capabilities (flag names), maxPasidLog2, type, data.",
    required: ["device"],
    properties: { device: name },
  },
  dma: {
    description:
      "A DMA issued by the device: every page translated first, bytes move only if all succeed. Reads take " +
      "length (default 4), writes data. Result: pa (of the first byte), data (reads); or a fault.",
    required: ["device", "iova"],
    properties: {
      device: name,
      pasid: num,
      iova: num,
      access: { enum: ["read", "write", "exec"] },
      priv: { type: "boolean" },
      length: num,
      data: { $ref: "#/$defs/hex" },
    },
  },
  "faults.read": {
    description: "Reads and clears the fault queue (of one device, or all). Result: faults.",
    required: [],
    properties: { device: name },
  },
  invalidate: {
    description:
      "IOMMU_HWPT_INVALIDATE on a nested HWPT or a vIOMMU (hwpt names either). Entries: on an SMMUv3 vIOMMU " +
      "[w0, w1] (the guest's raw 128-bit commands; vSIDs translated, the VMID applied); VT-d " +
      "{addr, npages, flags? (LEAF=1)}. Result: handled.",
    required: ["hwpt", "data"],
    properties: { hwpt: name, data: { type: "array" } },
  },
  "viommu.alloc": {
    description:
      "IOMMU_VIOMMU_ALLOC: a vIOMMU of type (arm-smmuv3) over the nest-parent HWPT hwpt, for the device's IOMMU.",
    required: ["as", "device", "hwpt", "type"],
    properties: { device: name, hwpt: name, type: { type: "string", examples: ["arm-smmuv3", "selftest"] } },
  },
  "vdevice.alloc": {
    description: "IOMMU_VDEVICE_ALLOC: the device is virtId (the SMMUv3 vSID, 32 bits) on the vIOMMU.",
    required: ["as", "viommu", "device", "virtId"],
    properties: { viommu: name, device: name, virtId: num },
  },
  "veventq.alloc": {
    description: "IOMMU_VEVENTQ_ALLOC: the vIOMMU's event queue of type (arm-smmuv3), keeping depth records.",
    required: ["as", "viommu", "type", "depth"],
    properties: { viommu: name, type: { type: "string", examples: ["arm-smmuv3"] }, depth: num },
  },
  "veventq.read": {
    description:
      "Reads a vEVENTQ (at most max records). Result: events [{flags (LOST_EVENTS = 1), sequence, data (hex)}].",
    required: ["veventq"],
    properties: { veventq: name, max: num },
  },
  "fault.alloc": {
    description: "IOMMU_FAULT_QUEUE_ALLOC: a FAULT object for hwpt.alloc's faultQueue (page requests only).",
    required: ["as"],
    properties: {},
  },
  "fault.read": {
    description:
      "Reads page requests from a FAULT object (at most max). Result: faults [iommu_hwpt_pgfault: flags, " +
      "devId (device name), pasid, grpid, perm, addr, length, cookie].",
    required: ["fault"],
    properties: { fault: name, max: num },
  },
  "fault.respond": {
    description:
      "iommu_hwpt_page_response: answers the group read with cookie; the DMA held on it is retried (success) " +
      "or failed (invalid). Result: results [DMA results].",
    required: ["fault", "cookie", "code"],
    properties: { fault: name, cookie: num, code: { enum: ["success", "invalid"] } },
  },
  "dirty.set": {
    description: "IOMMU_HWPT_SET_DIRTY_TRACKING.",
    required: ["hwpt", "enable"],
    properties: { hwpt: name, enable: { type: "boolean" } },
  },
  "dirty.read": {
    description: "IOMMU_HWPT_GET_DIRTY_BITMAP (bit i of byte j = page 8j+i). Result: bitmap (hex).",
    required: ["hwpt", "iova", "length"],
    properties: { hwpt: name, iova: num, length: num, pageSize: num, noClear: { type: "boolean" } },
  },
  "access.pin": {
    description: "iommufd_access_pin_pages on an mdev attached emulated. Result: pages (physical addresses).",
    required: ["device", "iova", "length"],
    properties: { device: name, iova: num, length: num, write: { type: "boolean" } },
  },
  "access.unpin": {
    description: "iommufd_access_unpin_pages.",
    required: ["device", "iova", "length"],
    properties: { device: name, iova: num, length: num },
  },
  "access.rw": {
    description: "iommufd_access_rw: reads length bytes, or writes data (write: true). Result: data (reads).",
    required: ["device", "iova"],
    properties: {
      device: name,
      iova: num,
      length: num,
      data: { $ref: "#/$defs/hex" },
      write: { type: "boolean" },
    },
  },
  "mem.write": {
    description: "Writes bytes to physical memory (not into the table region).",
    required: ["pa", "data"],
    properties: { pa: num, data: { $ref: "#/$defs/hex" } },
  },
  "mem.read": {
    description: "Reads bytes of physical memory. Result: data.",
    required: ["pa", "length"],
    properties: { pa: num, length: num },
  },
  destroy: {
    description: "IOMMU_DESTROY of a named object; EBUSY while in use.",
    required: ["id"],
    properties: { id: name },
  },
};

/** Every op name. */
export const OPS: readonly string[] = Object.keys(OP_ARGS);

const expectSchema: JsonSchema = {
  description:
    "Part of the result that must match: named fields must match, others are ignored; arrays element by " +
    "element; numbers by value (number or hex string); hex data case-insensitively. {fault: X} with X a " +
    "vendor name, a vendor code, a fault class or true; {error: ERRNO} or {error: true}.",
  type: "object",
  properties: {
    fault: {
      anyOf: [{ type: "boolean" }, { type: "string" }, { type: "integer" }, { type: "object" }],
    },
    error: { anyOf: [{ type: "boolean" }, { type: "string", pattern: "^E[A-Z0-9]+$" }] },
  },
};

function stepSchema(op: string): JsonSchema {
  const a = OP_ARGS[op]!;
  return {
    description: a.description,
    type: "object",
    required: ["op", ...a.required],
    additionalProperties: false,
    properties: {
      op: { const: op },
      as: name,
      name: { type: "string", description: "A label for the report." },
      comment: { type: "string" },
      expect: { $ref: "#/$defs/expect" },
      ...a.properties,
    },
  };
}

/**
 * The scenario schema. `backends` maps a backend name to its `configSchema`: each
 * adds an if/then on `iommus[].backend` so `config` is checked (and documented) too.
 */
export function scenarioSchema(backends: Readonly<Record<string, JsonSchema | undefined>> = {}): JsonSchema {
  const stepDefs: Record<string, JsonSchema> = {};
  for (const op of OPS) stepDefs[`step:${op}`] = stepSchema(op);
  const configRules = Object.entries(backends)
    .filter(([, s]) => s !== undefined)
    .map(([b, s]) => ({
      if: { properties: { backend: { const: b } }, required: ["backend"] },
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema keyword.
      then: { properties: { config: s } },
    }));
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    $id: "https://iommu-kit.dev/schema/scenario.schema.json",
    title: "iommu-kit scenario",
    description:
      "A scenario for `iommu-kit run`: physical memory, IOMMUs (backends by registered name), devices and " +
      "steps named after iommufd's ioctls, each with an optional expectation. Every number may be a hex string.",
    type: "object",
    required: ["steps"],
    additionalProperties: false,
    properties: {
      $schema: { type: "string" },
      name: { type: "string" },
      description: { type: "string" },
      plugins: {
        type: "array",
        items: { type: "string" },
        description:
          "Modules (paths relative to the file, or package names) whose BackendFactory exports are registered.",
      },
      memory: {
        type: "object",
        additionalProperties: false,
        description: "Default: RAM [0, 4 GiB); tables in a 256 MiB region just above it.",
        properties: {
          ram: { type: "array", minItems: 1, items: { $ref: "#/$defs/region" } },
          tables: { $ref: "#/$defs/region" },
        },
      },
      iommus: {
        type: "array",
        items: {
          type: "object",
          required: ["name", "backend"],
          additionalProperties: false,
          properties: {
            name,
            backend: {
              type: "string",
              description: "A registered backend name (smmuv3, vtd, mdev-emulated, ...).",
            },
            config: {
              type: "object",
              description: "The backend's options; omitted = the most capable configuration.",
            },
          },
          ...(configRules.length > 0 ? { allOf: configRules } : {}),
        },
      },
      devices: {
        type: "array",
        items: {
          anyOf: [
            {
              type: "object",
              required: ["name", "iommu", "rid"],
              additionalProperties: false,
              properties: {
                name,
                iommu: name,
                rid: num,
                pasidBits: { type: "integer", minimum: 0, maximum: 20, description: "0 = no PASID." },
                ats: { type: "boolean" },
                pri: {
                  type: "boolean",
                  description: "PCIe PRI: the device sends page requests (needs ats).",
                },
                canStall: {
                  type: "boolean",
                  description: "The device tolerates stalls (SMMUv3 stall model).",
                },
              },
            },
            {
              type: "object",
              required: ["name", "parent"],
              additionalProperties: false,
              description: "A mediated device on a parent device.",
              properties: { name, parent: name, iommu: name },
            },
          ],
        },
      },
      steps: {
        type: "array",
        items: {
          type: "object",
          required: ["op"],
          properties: { op: { enum: OPS } },
          allOf: OPS.map((op) => ({
            if: { properties: { op: { const: op } }, required: ["op"] },
            // biome-ignore lint/suspicious/noThenProperty: JSON Schema keyword.
            then: { $ref: `#/$defs/step:${op}` },
          })),
        },
      },
    },
    $defs: {
      number: {
        description: "A non-negative integer: a JSON number or a hex string (0x...).",
        anyOf: [
          { type: "integer", minimum: 0 },
          { type: "string", pattern: "^(0[xX][0-9a-fA-F]+|[0-9]+)$" },
        ],
      },
      hex: {
        type: "string",
        pattern: "^(0[xX])?([0-9a-fA-F]{2}|[\\s_])*$",
        description: "Bytes as hex text.",
      },
      name: { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_.:-]*$" },
      region: {
        type: "object",
        required: ["base", "size"],
        additionalProperties: false,
        properties: { base: num, size: num, name: { type: "string" } },
      },
      range: {
        type: "object",
        required: ["start", "last"],
        additionalProperties: false,
        properties: { start: num, last: num },
      },
      target: {
        description: '"rid", "rid-all-pasids", "emulated", {"pasid": N}, or {"pasid": "auto"} (mdev).',
        anyOf: [
          { enum: ["rid", "rid-all-pasids", "emulated"] },
          {
            type: "object",
            required: ["pasid"],
            additionalProperties: false,
            properties: { pasid: { anyOf: [num, { const: "auto" }] } },
          },
        ],
      },
      expect: expectSchema,
      ...stepDefs,
    },
  };
}

// Writes the installed iommufd.h: 6.12's uAPI header plus the three uAPI names that
// Debian's 6.12.117 selftest uses but its own tree does not define (upstream values,
// include/uapi/linux/iommufd.h of 6.17): IOMMU_HW_INFO_TYPE_DEFAULT = 0,
// IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0, and `in_data_type` sharing the u32 of
// `out_data_type` in struct iommu_hw_info. Layout and every other byte are unchanged.
// Usage: node compat-header.mjs IN OUT
import { readFileSync, writeFileSync } from "node:fs";

const [, , input, output] = process.argv;
let s = readFileSync(input, "utf8");
const edits = [
  ["\t__u32 out_data_type;\n", "\tunion {\n\t\t__u32 in_data_type;\n\t\t__u32 out_data_type;\n\t};\n"],
  ["\tIOMMU_HW_INFO_TYPE_NONE = 0,\n", "\tIOMMU_HW_INFO_TYPE_NONE = 0,\n\tIOMMU_HW_INFO_TYPE_DEFAULT = 0,\n"],
  [
    "#define IOMMU_GET_HW_INFO ",
    "enum iommufd_hw_info_flags {\n\tIOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0,\n};\n\n#define IOMMU_GET_HW_INFO ",
  ],
];
for (const [from, to] of edits) {
  if (s.includes(to)) continue;
  if (!s.includes(from)) {
    console.error(`compat-header: "${from.trim()}" not found in ${input}`);
    process.exit(1);
  }
  s = s.replace(from, to);
}
writeFileSync(output, s.replace(/__user /g, ""));

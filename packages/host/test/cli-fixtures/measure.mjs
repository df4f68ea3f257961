// Preloaded into the CLI by tests (node --import): on exit, writes the process's CPU
// time and peak RSS to $IOMMU_KIT_MEASURE. A crash (V8 out-of-memory abort) writes
// nothing, which the test sees.
import { writeFileSync } from "node:fs";

const out = process.env.IOMMU_KIT_MEASURE;
if (out) {
  process.on("exit", () => {
    const u = process.resourceUsage();
    writeFileSync(
      out,
      JSON.stringify({ cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000, maxRssKb: u.maxRSS }),
    );
  });
}

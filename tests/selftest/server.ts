/**
 * Starts `iommu-kit serve` from the sources (no build needed): used by run.sh.
 * Usage: tsx --conditions=@iommu-kit/source tests/selftest/server.ts SOCKET [--trace]
 */
import { serve } from "../../packages/host/src/cli/serve.ts";

const socket = process.argv[2] ?? "";
await serve({ socket, trace: process.argv.includes("--trace") });

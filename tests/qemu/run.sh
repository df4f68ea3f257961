#!/usr/bin/env bash
# `pnpm test:qemu`: the differential campaign against QEMU (vitest project tests/qemu;
# its global setup, setup.ts, installs Debian's QEMU when missing).
set -uo pipefail
cd "$(dirname "$0")/../.."
exec pnpm exec vitest run --project qemu "$@"

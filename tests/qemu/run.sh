#!/usr/bin/env bash
# `pnpm test:qemu`: installs QEMU (Debian's qemu-system-x86 / qemu-system-arm) when
# missing, then runs the differential campaign (vitest project tests/qemu).
set -uo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null 2>&1 || need+=(qemu-system-arm)
if [ ${#need[@]} -gt 0 ]; then
  echo "test:qemu: installing ${need[*]} ..."
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! { $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    echo "test:qemu: could not install ${need[*]} (needs apt-get and root); install QEMU and run again" >&2
    exit 1
  fi
fi
exec pnpm exec vitest run --root tests/qemu --config vitest.config.ts "$@"

#!/usr/bin/env bash
# pnpm test:selftest — the Linux 6.12 iommufd selftest against iommu-kit's host, then
# tests/selftest/viommu.c (the 6.13-6.15 vIOMMU / vEVENTQ / FAULT-file uAPI, which the 6.12
# selftest predates) in the same harness through the same preload library.
#
# 1. Installs what is missing (gcc, make, Debian's linux-source-6.12) with apt-get.
# 2. Extracts the selftest and the headers it includes from /usr/src/linux-source-6.12.tar.xz
#    into a cache outside the repository ($IOMMU_KIT_CACHE, default /var/cache/iommu-kit).
# 3. Installs the uAPI headers as `make headers_install` would (__user stripped). Debian's
#    6.12.117 selftest already uses five names its own tree lacks (IOMMU_HW_INFO_TYPE_DEFAULT,
#    IOMMU_HW_INFO_FLAG_INPUT_TYPE, iommu_hw_info.in_data_type, MOCK_FLAGS_DEVICE_PASID,
#    MOCK_PASID_WIDTH): the installed header gets them with their upstream values, the two
#    mock names come as -D flags. The selftest source itself is built as shipped.
# 4. Builds the preload library, the selftest and viommu.c, starts the server, runs every
#    test through the preload, prints one "N passed, N failed, N skipped" line over both
#    programs and each failing test.
# Exit status: 0 when nothing failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${IOMMU_KIT_CACHE:-/var/cache/iommu-kit}"
src="$cache/linux-source-6.12"
tarball=/usr/src/linux-source-6.12.tar.xz
log="$cache/selftest.log"

die() { echo "selftest: $*" >&2; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
[ -f "$tarball" ] || need+=(linux-source-6.12)
if [ ${#need[@]} -gt 0 ]; then
  echo "selftest: installing ${need[*]}"
  if ! { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; }; then
    die "apt-get install ${need[*]} failed (needs root and the Debian archive)"
  fi
fi
[ -f "$tarball" ] || die "$tarball is missing after installing linux-source-6.12"
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
  cache="${TMPDIR:-/tmp}/iommu-kit"
  src="$cache/linux-source-6.12"
  log="$cache/selftest.log"
  mkdir -p "$cache" || die "cannot create a cache directory"
fi

if [ ! -f "$src/.extracted" ] || [ "$tarball" -nt "$src/.extracted" ]; then
  echo "selftest: extracting the selftest from $tarball"
  rm -rf "$src"
  tar -C "$cache" -xJf "$tarball" \
    linux-source-6.12/tools/testing/selftests/iommu \
    linux-source-6.12/tools/testing/selftests/kselftest.h \
    linux-source-6.12/tools/testing/selftests/kselftest_harness.h \
    linux-source-6.12/tools/testing/selftests/lib.mk \
    linux-source-6.12/tools/include \
    linux-source-6.12/include/uapi/linux/iommufd.h \
    linux-source-6.12/include/uapi/linux/vfio.h \
    linux-source-6.12/drivers/iommu/iommufd/iommufd_test.h \
    || die "extracting from $tarball failed"
  touch "$src/.extracted"
fi

# The installed uAPI headers (scripts/headers_install.sh strips __user).
khdr="$cache/khdr"
mkdir -p "$khdr/linux"
sed 's/__user //g' "$src/include/uapi/linux/vfio.h" > "$khdr/linux/vfio.h"
node "$here/compat-header.mjs" "$src/include/uapi/linux/iommufd.h" "$khdr/linux/iommufd.h" \
  || die "could not write the compat iommufd.h"

out="$cache/build"
mkdir -p "$out"
gcc -shared -fPIC -O2 -Wall -o "$out/libiommu-kit-preload.so" "$here/preload.c" -ldl \
  || die "building the preload library failed"
cflags="-Wall -O2 -Wno-unused-function -isystem $khdr -DMOCK_FLAGS_DEVICE_PASID=4 -DMOCK_PASID_WIDTH=20"
if ! make -s -C "$src/tools/testing/selftests/iommu" OUTPUT="$out" KHDR_INCLUDES="-isystem $khdr" \
  CFLAGS="$cflags" "$out/iommufd" >"$out/make.log" 2>&1; then
  cat "$out/make.log" >&2
  die "building tools/testing/selftests/iommu/iommufd failed"
fi
# viommu.c includes the selftest's iommufd_utils.h (and through it kselftest_harness.h).
if ! gcc $cflags -Wno-unused-variable -I "$src/tools/testing/selftests/iommu" -o "$out/viommu" \
  "$here/viommu.c" >"$out/viommu-build.log" 2>&1; then
  cat "$out/viommu-build.log" >&2
  die "building tests/selftest/viommu.c failed"
fi

sock="$cache/iommu.sock"
rm -f "$sock"
cd "$root"
trace=()
[ -n "${IOMMU_KIT_TRACE:-}" ] && trace=(--trace)
node --conditions=@iommu-kit/source --import tsx "$here/server.ts" "$sock" "${trace[@]}" >"$cache/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$cache/server.log" >&2; die "the server did not start"; }

# The hugepage variants mmap MAP_HUGETLB buffers (up to 2 x 128 MiB): reserve 2 MiB pages
# for the run and give them back after.
hp=/proc/sys/vm/nr_hugepages
hp_old=$(cat "$hp" 2>/dev/null || echo 0)
if [ "$hp_old" -lt 400 ] && [ -w "$hp" ]; then
  echo 400 >"$hp" 2>/dev/null || true
  trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; echo "$hp_old" >"$hp" 2>/dev/null' EXIT
fi

echo "selftest: running iommufd (Linux 6.12.x selftest) through the preload library"
filter=()
[ -n "${IOMMU_KIT_SELFTEST_ARGS:-}" ] && read -r -a filter <<<"$IOMMU_KIT_SELFTEST_ARGS"
(cd "$out" && IOMMU_KIT_SOCKET="$sock" LD_PRELOAD="$out/libiommu-kit-preload.so" \
  timeout 600 ./iommufd "${filter[@]}") >"$log" 2>&1
vlog="$cache/viommu.log"
echo "selftest: running viommu (Linux 6.15 vIOMMU uAPI) through the preload library"
vfilter=()
[ -n "${IOMMU_KIT_VIOMMU_ARGS:-}" ] && read -r -a vfilter <<<"$IOMMU_KIT_VIOMMU_ARGS"
(cd "$out" && IOMMU_KIT_SOCKET="$sock" LD_PRELOAD="$out/libiommu-kit-preload.so" \
  timeout 120 ./viommu "${vfilter[@]}") >"$vlog" 2>&1
node "$here/summary.mjs" "$log" "$vlog"

#!/usr/bin/env bash
# Proves that citygate-firmware needs no std: builds firmware/nostd-check, a #![no_std]
# #![no_main] binary with its own panic handler and entry point, linked without the C start
# files (-nostartfiles -static), then checks that no std or alloc symbol made it in.
# Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$here/nostd-check"
target_dir="${CARGO_TARGET_DIR:-$here/../target}/nostd-check"
export CARGO_TARGET_DIR="$target_dir"
cd "$crate"
# The link flags go to the final binary only (build scripts and proc macros link normally).
# rustc links a no_std binary with -nodefaultlibs; the static C library is named explicitly
# for nothing but the compiler's memcpy/memset/memcmp calls (no C runtime start-up is linked).
cargo rustc --quiet --bin citygate-nostd-check -- \
    -C link-arg=-nostartfiles -C link-arg=-static -C link-arg=-Wl,--start-group -C link-arg=-lc -C link-arg=-Wl,--end-group
bin="$target_dir/debug/citygate-nostd-check"
if [[ ! -x "$bin" ]]; then
    echo "check-no-std: FAILED: $bin was not built" >&2
    exit 1
fi
if ! command -v nm >/dev/null 2>&1; then
    echo "check-no-std: FAILED: nm not found (binutils) to inspect $bin" >&2
    exit 1
fi
leaked="$(nm "$bin" | grep -E '_ZN3std|_ZN5alloc|__rust_alloc|__rg_alloc' || true)"
if [[ -n "$leaked" ]]; then
    echo "check-no-std: FAILED: std/alloc symbols linked into $bin:" >&2
    echo "$leaked" | head -20 >&2
    exit 1
fi
firmware_syms="$(nm "$bin" | grep -c 'citygate_firmware' || true)"
if [[ "$firmware_syms" -eq 0 ]]; then
    echo "check-no-std: FAILED: no citygate_firmware code was linked into $bin" >&2
    exit 1
fi
echo "check-no-std: ok: $bin is #![no_std], links no std/alloc, holds $firmware_syms citygate_firmware symbols"

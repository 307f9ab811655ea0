#!/usr/bin/env bash
# Type-checks the crates with macOS-specific code for Apple Silicon
# (aarch64-apple-darwin) from this Linux machine: smelt-cpu with the `accelerate`
# feature (f32 GEMM through Apple's Accelerate/AMX) and smelt-gpu (wgpu's Metal
# backend). `cargo check` needs only the target's standard library, which rustup
# installs; linking (Apple's SDK) and running are what it cannot check.
#
# Without rustup, or when the target cannot be installed (no network), it says
# so and exits 0: the rest of the suite does not depend on it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=aarch64-apple-darwin
if ! command -v rustup >/dev/null; then
    echo "check-apple: SKIPPED: no rustup to install the $TARGET standard library"
    exit 0
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    if ! rustup target add "$TARGET"; then
        echo "check-apple: SKIPPED: could not install the $TARGET standard library"
        exit 0
    fi
fi
RUSTFLAGS="-D warnings" cargo check --target "$TARGET" -p smelt-cpu --features smelt-cpu/accelerate -p smelt-gpu

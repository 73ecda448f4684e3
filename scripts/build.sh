#!/usr/bin/env bash
# Configures and builds the project into build/ (binaries in build/bin, the SDK in build/lib,
# example test libraries in build/examples). Extra arguments go to the CMake configure step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOADS_BUILD_DIR:-$root/build}"
jobs="${LOADS_BUILD_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${LOADS_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build" -j "$jobs"

#!/usr/bin/env bash
# All tests: installs what is missing, builds, runs the unit and integration tests with ctest.
# The integration tests start their own servers (nginx, the demo target, a WebSocket server) on
# free loopback ports.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOADS_BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"

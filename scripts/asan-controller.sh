#!/usr/bin/env bash
# loads-controller built with AddressSanitizer and UndefinedBehaviorSanitizer (GCC), run through
# the integration tests that drive it: the gRPC API, the worker protocol with hostile frames,
# faults, CURVE, TLS, the live page, the Kubernetes launcher. Any sanitizer report fails it, and
# is printed. The workers, runners and test libraries are the normal build's: the engine switches
# stacks (Boost.Context fibers), which AddressSanitizer cannot follow in Debian's Boost, so it
# is covered by the fuzzers and the sanitized unit tests instead (fuzz/README.md).
#
#   scripts/asan-controller.sh [TEST_MODULE...]     (after scripts/build.sh)
#
# The sanitized controller is built in $LOADS_ASAN_BUILD_DIR (default: <build>/asan), about 11
# minutes on 2 cores; the tests take about 8. ctest runs it as asan.controller with
# -DLOADS_ASAN_TESTS=ON (not in CI, for its time). Leaks are not checked: gRPC and protobuf keep
# their globals until exit on purpose.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOADS_BUILD_DIR:-$root/build}"
asan="${LOADS_ASAN_BUILD_DIR:-$build/asan}"
jobs="${LOADS_BUILD_JOBS:-2}"
if [[ ! -x "$build/bin/loads-worker" || ! -d "$build/tests/sdk" ]]; then
  echo "asan-controller: no normal build in $build (run scripts/build.sh first)" >&2
  exit 2
fi
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
cmake -S "$root" -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOADS_BUILD_TESTS=OFF \
  -DLOADS_WERROR=OFF -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$asan" --target loads_controller -j "$jobs" >/dev/null
# One folder with the sanitized controller and everything else from the normal build: the
# controller starts its local workers from its own folder, and the tests find the test
# libraries beside it (../tests/sdk).
for file in "$build"/bin/*; do
  [[ "$(basename "$file")" == loads-controller ]] || ln -sfn "$file" "$asan/bin/"
done
ln -sfn "$build/tests" "$asan/tests"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
modules=("$@")
if ((${#modules[@]} == 0)); then
  modules=(test_distributed test_api test_faults_distributed test_worker_protocol
           test_wire_format test_curve test_tls test_live_page test_kubernetes_launcher
           test_metrics test_series test_thresholds test_notify)
fi
status=0
(
  cd "$root/tests/integration"
  ASAN_OPTIONS="detect_leaks=0:log_path=$logs/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan" \
  LOADS_BIN_DIR="$asan/bin" LOADS_EXAMPLES_DIR="$build/examples" PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 -m unittest "${modules[@]}"
) || status=$?
reports=("$logs"/*)
if [[ -e "${reports[0]}" ]]; then
  echo "asan-controller: the sanitizers reported ${#reports[@]} problem(s):" >&2
  cat "${reports[@]}" >&2
  exit 1
fi
echo "asan-controller: no sanitizer report" >&2
exit "$status"

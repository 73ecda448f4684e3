#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts the bundled demo target on a free
# loopback port, runs the bundled example load test against it (progress bar, then the report)
# and stops the target. The report is also written as a page with charts, build/demo-report.html. Arguments replace the default load (-u 20 -d 5: 20 virtual users
# looping the test for 5 seconds).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOADS_BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

log="$(mktemp)"
"$build/bin/loads-demo-target" --port 0 >"$log" 2>&1 &
target_pid=$!
trap 'kill "$target_pid" 2>/dev/null; wait "$target_pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q 'listening on' "$log" && break
  kill -0 "$target_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done
url="$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$log")"
[[ -n "$url" ]] || { echo "demo: the demo target did not start" >&2; cat "$log" >&2; exit 1; }
echo "demo: loads-demo-target is serving $url"

load=("$@")
((${#load[@]})) || load=(-u 20 -d 5)
cmd=("$build/bin/loads-runner" example.TestWebSite.test_es --test-path "$build/examples"
  --server-url "$url/" --output "html:$build/demo-report.html" "${load[@]}")
echo "demo: ${cmd[*]}"
status=0
"${cmd[@]}" || status=$?
[[ -s "$build/demo-report.html" ]] && echo "demo: the report with charts: $build/demo-report.html"
exit "$status"

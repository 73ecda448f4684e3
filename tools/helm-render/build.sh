#!/usr/bin/env bash
# Builds tools/helm-render into OUT_DIR/helm-render, offline, from Debian's Go packages
# (golang-go, golang-github-masterminds-sprig-dev). The sources are copied into a GOPATH under
# OUT_DIR so that nothing is written to the source tree.
#
#   tools/helm-render/build.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# GOPATH mode only maps the /v3 import to Debian's sprig for a package that sits inside a GOPATH
# src/ tree and has a go.mod (see go.mod).
pkg="$out/gopath/src/loads/helm-render"
mkdir -p "$pkg"
cp "$here/main.go" "$here/go.mod" "$pkg/"
cd "$pkg"
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOCACHE="$out/go-cache" GOFLAGS= \
  go build -o "$out/helm-render" .

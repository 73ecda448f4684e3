#!/usr/bin/env bash
# Prints, one per line and sorted, the Debian packages that provide the shared libraries the
# given ELF files load: ldd resolves every library (transitively), dpkg -S names the package
# that ships it. Libraries under an --own DIR (the project's own, such as the staged
# libloads.so) are skipped. Fails if a library is not found or belongs to no package, so an
# image can never silently miss one.
#
#   runtime-packages.sh [--own DIR]... FILE...
#
# Used by docker/Dockerfile on the installed binaries; the runtime images install exactly this
# list, so there is no hand-written list of runtime packages to keep in step with deps.txt.
set -euo pipefail
own=()
while (($#)) && [[ "$1" == --own ]]; do
  own+=("$(realpath -m "$2")")
  shift 2
done
(($#)) || { echo "usage: $0 [--own DIR]... FILE..." >&2; exit 2; }

# The package shipping library file $1. With the merged /usr of Debian 12, ldd may print
# /lib/... for a file that dpkg records as /usr/lib/... (or the other way round), and the
# name may be a symbolic link to the versioned file: try each spelling.
package_of() {
  local path="$1" real candidates=() c out
  real="$(readlink -f "$path")"
  for c in "$path" "$real"; do
    candidates+=("$c")
    case "$c" in
      /usr/*) candidates+=("${c#/usr}") ;;
      *) candidates+=("/usr$c") ;;
    esac
  done
  for c in "${candidates[@]}"; do
    if out="$(dpkg -S "$c" 2>/dev/null)"; then
      # "libzmq5:amd64: /usr/lib/x86_64-linux-gnu/libzmq.so.5"; skip "diversion by" lines.
      sed -n 's/^\([^ ]*\): \/.*/\1/p' <<<"$out" | tr ',' '\n' | sed 's/^ *//; s/:.*//'
      return 0
    fi
  done
  return 1
}

declare -A packages=()
status=0
for file in "$@"; do
  if ! deps="$(ldd "$file" 2>&1)"; then
    echo "runtime-packages: ldd $file failed: $deps" >&2
    exit 1
  fi
  while read -r line; do
    case "$line" in
      *"=> not found"*)
        echo "runtime-packages: $file: ${line%% *} not found" >&2
        status=1
        continue ;;
      *"=> /"*) lib="${line#*=> }" ;;
      /*) lib="$line" ;;
      *) continue ;;  # linux-vdso.so.1: in the kernel, not a file
    esac
    lib="${lib%% (0x*}"
    for dir in "${own[@]}"; do
      [[ "$(realpath -m "$lib")" == "$dir"/* ]] && continue 2
    done
    if ! pkgs="$(package_of "$lib")"; then
      echo "runtime-packages: $file: $lib belongs to no Debian package" >&2
      status=1
      continue
    fi
    while read -r pkg; do packages["$pkg"]=1; done <<<"$pkgs"
  done <<<"$deps"
done
((status == 0)) || exit "$status"
printf '%s\n' "${!packages[@]}" | sort

#!/usr/bin/env bash
# Clang's thread-safety analysis over the controller: every translation unit under controller/ in
# <build>/compile_commands.json is compiled by clang++ -fsyntax-only with the build's own flags
# (minus -Werror and any flag clang does not take) and -Wthread-safety -Wthread-safety-beta as
# errors. The annotations are those of common/include/loads/common/thread_annotations.h
# (LOADS_GUARDED_BY, LOADS_REQUIRES, LOADS_ACQUIRED_AFTER, ...); under gcc they are nothing.
#
# It first checks itself: a snippet that reads guarded data without its lock, calls a
# LOADS_REQUIRES function without it, takes two locks out of order and returns holding one must
# fail with those four errors, and the same snippet without them must pass. So the check cannot
# pass because the flags, the compiler or the macros stopped doing anything.
#
#   scripts/check-thread-safety.sh [BUILD_DIR]     (after cmake; ctest -L lint runs it)
#
# BUILD_DIR defaults to $LOADS_BUILD_DIR, then build/. $CLANGXX is the compiler (default
# clang++); $LOADS_LINT_JOBS the translation units compiled at once (default 2). About 15 s on
# 2 cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${LOADS_BUILD_DIR:-$root/build}}"
clang="${CLANGXX:-clang++}"
jobs="${LOADS_LINT_JOBS:-2}"
db="$build/compile_commands.json"
if ! command -v "$clang" >/dev/null; then
  echo "check-thread-safety: $clang not found (the Debian package clang)" >&2
  exit 2
fi
if [[ ! -f $db ]]; then
  echo "check-thread-safety: no $db (configure the build first: scripts/build.sh)" >&2
  exit 2
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

# One script per translation unit ($tmp/tu/N.sh), and $tmp/selftest.sh: the snippet compiled
# with broker.cc's flags.
python3 - "$db" "$root" "$tmp" "$clang" <<'EOF'
import json, os, shlex, subprocess, sys

db, root, tmp, clang = sys.argv[1:]
analysis = ["-fsyntax-only", "-Wthread-safety", "-Wthread-safety-beta",
            "-Werror=thread-safety", "-Werror=thread-safety-beta"]
probed = {}

def clang_takes(flag):
    # A warning or -f/-m flag only gcc knows: clang refuses it (or warns, made an error here).
    if flag not in probed:
        probed[flag] = subprocess.run(
            [clang, "-x", "c++", "-fsyntax-only", "-Werror=unknown-warning-option",
             "-Werror=unused-command-line-argument", flag, "-"],
            stdin=subprocess.DEVNULL, capture_output=True).returncode == 0
        if not probed[flag]:
            print(f"check-thread-safety: dropped {flag} (not a clang flag)", file=sys.stderr)
    return probed[flag]

def clang_command(entry):
    args = entry.get("arguments") or shlex.split(entry["command"])
    out, skip = [clang], False
    for arg in args[1:]:
        if skip:
            skip = False
        elif arg in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
        elif arg in ("-c", "-MD", "-MMD", "-Werror") or arg.startswith("-Werror="):
            pass
        elif arg[:2] in ("-f", "-m", "-W") and not clang_takes(arg):
            pass
        else:
            out.append(arg)
    return out + analysis

controller = os.path.join(root, "controller") + os.sep
units = {}
for entry in json.load(open(db)):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if path.startswith(controller):
        units.setdefault(path, entry)
broker = os.path.join(controller, "src", "broker.cc")
if broker not in units:
    sys.exit(f"check-thread-safety: {broker} is not in {db}: nothing to check")

def script(entry, command, extra=""):
    return f"cd {shlex.quote(entry['directory'])} && exec {shlex.join(command)}{extra}\n"

os.makedirs(os.path.join(tmp, "tu"))
for n, (path, entry) in enumerate(sorted(units.items())):
    with open(os.path.join(tmp, "tu", f"{n:03}.sh"), "w") as f:
        f.write(f"# {os.path.relpath(path, root)}\n" + script(entry, clang_command(entry)))
command = [a for a in clang_command(units[broker]) if a != units[broker]["file"] and
           os.path.realpath(os.path.join(units[broker]["directory"], a)) != broker]
with open(os.path.join(tmp, "selftest.sh"), "w") as f:
    f.write(script(units[broker], command, ' "$@"'))
EOF

cat >"$tmp/selftest.cc" <<'EOF'
#include <condition_variable>

#include "loads/common/thread_annotations.h"

class Counter {
 public:
  void Add() LOADS_EXCLUDES(mu_) {
    loads::MutexLock lock(mu_);
    AddLocked();
    changed_.notify_all();
  }
  int WaitForOne() LOADS_EXCLUDES(mu_) {
    loads::MutexLock lock(mu_);
    while (n_ == 0) changed_.wait(lock.native());
    lock.Unlock();
    lock.Lock();
    return n_;
  }
  void InOrder() LOADS_EXCLUDES(mu_, after_) {
    loads::MutexLock first(mu_);
    loads::MutexLock second(after_);
  }
#ifdef VIOLATIONS
  int ReadUnlocked() { return n_; }  // reading variable 'n_' requires holding mutex 'mu_'
  void CallUnlocked() { AddLocked(); }  // calling function 'AddLocked' requires holding mutex
  void OutOfOrder() {
    loads::MutexLock first(after_);
    loads::MutexLock second(mu_);  // mutex 'mu_' must be acquired before 'after_'
  }
  void KeepLocked() { mu_.Lock(); }  // mutex 'mu_' is still held at the end of function
#endif

 private:
  void AddLocked() LOADS_REQUIRES(mu_) { ++n_; }

  loads::Mutex mu_;
  loads::Mutex after_ LOADS_ACQUIRED_AFTER(mu_);
  std::condition_variable changed_;
  int n_ LOADS_GUARDED_BY(mu_) = 0;
};
EOF
if ! bash "$tmp/selftest.sh" "$tmp/selftest.cc" >"$tmp/good.log" 2>&1; then
  cat "$tmp/good.log" >&2
  echo "check-thread-safety: self-test: correct locking was refused (above)" >&2
  exit 1
fi
if bash "$tmp/selftest.sh" -DVIOLATIONS "$tmp/selftest.cc" >"$tmp/bad.log" 2>&1; then
  echo "check-thread-safety: self-test: violations compiled without an error: the analysis is" \
    "not running" >&2
  exit 1
fi
for expected in "reading variable 'n_' requires holding mutex 'mu_'" \
  "calling function 'AddLocked' requires holding mutex 'mu_'" \
  "mutex 'mu_' must be acquired before 'after_'" \
  "mutex 'mu_' is still held at the end of function"; do
  if ! grep -q "error: $expected" "$tmp/bad.log"; then
    cat "$tmp/bad.log" >&2
    echo "check-thread-safety: self-test: no error \"$expected\" (output above)" >&2
    exit 1
  fi
done

units=("$tmp"/tu/*.sh)
failed=0
# shellcheck disable=SC2016  # $1 is the inner shell's
printf '%s\0' "${units[@]}" |
  xargs -0 -n1 -P "$jobs" sh -c 'bash "$1" >"$1.log" 2>&1 || touch "$1.failed"' sh
for unit in "${units[@]}"; do
  name="$(head -1 "$unit" | cut -c3-)"
  if [[ -e $unit.failed ]]; then
    failed=$((failed + 1))
    echo "check-thread-safety: $name:" >&2
    cat "$unit.log" >&2
  elif [[ -s $unit.log ]]; then
    cat "$unit.log" >&2  # warnings that are not the analysis': shown, not fatal
  fi
done
if ((failed)); then
  echo "check-thread-safety: $failed of ${#units[@]} translation unit(s) failed" \
    "($((SECONDS - start)) s)" >&2
  exit 1
fi
echo "check-thread-safety: self-test passed; ${#units[@]} controller translation units clean" \
  "($((SECONDS - start)) s)"

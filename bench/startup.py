#!/usr/bin/python3
"""Start-up cost of loads-runner: the wall time of a one-request run (`--url URL -u 1 --hits 1
--quiet`) against a local nginx, which is almost all start-up and tear-down (loading, the
engine process, threads). With --baseline, a second runner (an older build) runs alternately in
the same sitting and the ratio of the medians is printed.

  /usr/bin/python3 bench/startup.py                      # build/bin/loads-runner, 30 runs
  /usr/bin/python3 bench/startup.py --baseline OLD/bin/loads-runner --runs 50
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402


def one_run(runner, url):
    started = time.perf_counter()
    done = subprocess.run([runner, "--url", url, "-u", "1", "--hits", "1", "--quiet"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{runner} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.path.join(os.environ.get("LOADS_BIN_DIR", os.path.join(ROOT, "build", "bin")),
                           "loads-runner")
    parser.add_argument("--runner", default=default)
    parser.add_argument("--baseline", help="another loads-runner, run alternately")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    runners = [("runner", args.runner)] + ([("baseline", args.baseline)] if args.baseline else [])
    times = {name: [] for name, _ in runners}
    with harness.Nginx(access_log=False) as nginx:
        for name, runner in runners:  # warm the page cache
            one_run(runner, nginx.url)
        for i in range(args.runs):
            order = runners if i % 2 == 0 else list(reversed(runners))
            for name, runner in order:
                times[name].append(one_run(runner, nginx.url))
    for name, runner in runners:
        values = sorted(times[name])
        print(f"{name:9} {runner}: median {statistics.median(values) * 1000:.1f} ms, "
              f"p10 {values[len(values) // 10] * 1000:.1f} ms, "
              f"p90 {values[len(values) * 9 // 10] * 1000:.1f} ms ({len(values)} runs)")
    if args.baseline:
        ratio = statistics.median(times["runner"]) / statistics.median(times["baseline"])
        print(f"runner / baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()

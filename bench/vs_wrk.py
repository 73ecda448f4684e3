#!/usr/bin/python3
"""Compare loads-runner with wrk on the same local nginx.

Starts a private nginx on 127.0.0.1 (the integration tests' harness.Nginx,
access log off), then runs alternating pairs of

    wrk -t1 -cC -dSs --latency URL
    loads-runner --url URL -u C -d S --threads 1 --quiet --output json:FILE

and prints, per run and as medians, the requests per second and the
requests per CPU-second of each client, their p50/p99 latency, and the
ratios loads/wrk. CPU time is the client's own (user + system, all its
threads), taken from os.wait4's rusage, so nginx's share is not counted.

Use Debian's /usr/bin/python3. See bench/README.md.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import harness  # noqa: E402  (the Nginx class of the integration tests)


class BenchError(Exception):
    """A problem to report in one line, without a traceback."""


# --------------------------------------------------------------------------
# Running one client


def run_measured(argv, timeout, workdir):
    """Run argv to completion with stdout/stderr in files.

    Returns (exit code, stdout, stderr, CPU seconds, wall seconds). The CPU
    time comes from wait4() on this very child, so it is exactly the
    client's (user + sys of all its threads), nothing else.
    """
    out_path = os.path.join(workdir, "stdout")
    err_path = os.path.join(workdir, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        except OSError as error:
            raise BenchError(f"cannot start {argv[0]}: {error.strerror}")
        started = time.monotonic()
        reaped = False
        try:
            # Poll with WNOHANG rather than block, so a hung client can be
            # killed at the deadline (and Ctrl-C is seen at once).
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    reaped = True
                    break
                if time.monotonic() - started > timeout:
                    raise BenchError(f"{os.path.basename(argv[0])} still running after {timeout:.0f}s; killed it")
                time.sleep(0.05)
        finally:
            if not reaped:  # deadline passed, or Ctrl-C / SIGTERM: never leave a load running
                process.kill()
                os.wait4(process.pid, 0)
                process.returncode = -signal.SIGKILL
        wall = time.monotonic() - started
    # We reaped the child ourselves: tell Popen, so it never waits for it again.
    process.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    return process.returncode, stdout, stderr, usage.ru_utime + usage.ru_stime, wall


def nginx_version():
    # "nginx -v" prints "nginx version: nginx/1.22.1" on stderr.
    done = subprocess.run([harness.NGINX_BINARY, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\S+)", done.stderr)
    return match.group(1) if match else "?"


def tail(text, lines=5):
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------
# wrk

UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(output):
    """requests, seconds, rps, p50/p99 (seconds) and error counts from wrk's output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not total or not rps:
        raise BenchError("cannot read wrk's output:\n" + tail(output, 15))
    # "--latency" adds lines like "     50%  302.00us".
    percentiles = {}
    for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE):
        percentiles[percent] = float(value) * UNIT_SECONDS[unit]
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return {
        "requests": int(total.group(1)),
        "seconds": float(total.group(2)) * UNIT_SECONDS[total.group(3)],
        "rps": float(rps.group(1)),
        "p50": percentiles.get("50"),
        "p99": percentiles.get("99"),
        "errors": errors,
    }


def run_wrk(wrk, url, connections, duration, workdir):
    argv = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    code, stdout, stderr, cpu, wall = run_measured(argv, duration + 30, workdir)
    if code != 0:
        raise BenchError(f"wrk exited with code {code}:\n{tail(stderr or stdout)}")
    result = parse_wrk(stdout)
    result.update(tool="wrk", cpu=cpu, wall=wall)
    return result


# --------------------------------------------------------------------------
# loads-runner


def run_loads(runner, url, connections, duration, workdir):
    report_path = os.path.join(workdir, "report.json")
    # One virtual user per connection, like wrk's -c; one engine thread like -t1.
    argv = [runner, "--url", url, "-u", str(connections), "-d", str(duration),
            "--threads", "1", "--quiet", "--output", f"json:{report_path}"]
    code, stdout, stderr, cpu, wall = run_measured(argv, duration + 30, workdir)
    # Exit 1 means some requests failed: the numbers are still worth
    # showing, with the error count. Anything else is a broken run.
    if code not in (0, 1):
        raise BenchError(f"loads-runner exited with code {code}:\n{tail(stderr or stdout)}")
    try:
        with open(report_path) as f:
            report = json.load(f)
    except (OSError, ValueError) as error:
        raise BenchError(f"loads-runner exited with code {code} without a readable JSON report ({error}):\n"
                         f"{tail(stderr or stdout)}")
    try:
        latency = report.get("latency_seconds") or {}
        tests = report["tests"]
        return {
            "tool": "loads",
            "requests": int(report["hits"]),
            "seconds": float(report["duration_seconds"]),
            "rps": float(report["rps"]),
            "p50": latency.get("p50"),
            "p99": latency.get("p99"),
            "errors": tests["failures"] + tests["errors"] + sum((report.get("hit_errors") or {}).values()),
            "cpu": cpu,
            "wall": wall,
        }
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(f"unexpected loads-runner report (missing {error}): {json.dumps(report)[:500]}")


# --------------------------------------------------------------------------
# Output


def per_cpu(run):
    return run["requests"] / run["cpu"] if run["cpu"] > 0 else float("nan")


def fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def median_of(runs, key):
    values = [key(run) for run in runs]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def build_tables(runs):
    """(per-run rows, summary rows), each row a list of cells."""
    rows = []
    for run in runs:
        rows.append([str(run["pair"]), run["tool"], str(run["requests"]), f"{run['seconds']:.2f}",
                     f"{run['rps']:.0f}", f"{run['cpu']:.2f}", f"{per_cpu(run):.0f}",
                     fmt_ms(run["p50"]), fmt_ms(run["p99"]), str(run["errors"])])
    summary = []
    medians = {}
    for tool in ("wrk", "loads"):
        mine = [run for run in runs if run["tool"] == tool]
        if not mine:
            continue
        medians[tool] = {
            "rps": median_of(mine, lambda r: r["rps"]),
            "per_cpu": median_of(mine, per_cpu),
            "p50": median_of(mine, lambda r: r["p50"]),
            "p99": median_of(mine, lambda r: r["p99"]),
        }
        m = medians[tool]
        summary.append([f"median {tool}", f"{m['rps']:.0f}", f"{m['per_cpu']:.0f}", fmt_ms(m["p50"]), fmt_ms(m["p99"])])
    if "wrk" in medians and "loads" in medians:
        w, l = medians["wrk"], medians["loads"]

        def ratio(key):
            return f"{l[key] / w[key]:.2f}" if l[key] and w[key] else "-"

        summary.append(["ratio loads/wrk", ratio("rps"), ratio("per_cpu"), ratio("p50"), ratio("p99")])
    return rows, summary


RUN_HEADER = ["pair", "tool", "requests", "seconds", "req/s", "CPU s", "req/CPU-s", "p50 ms", "p99 ms", "errors"]
SUMMARY_HEADER = ["", "req/s", "req/CPU-s", "p50 ms", "p99 ms"]


def render_text(header, rows, labels):
    """Aligned columns; the first `labels` columns to the left, numbers to the right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) if i < labels else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths)))
             for line in [header] + rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_markdown(header, rows, labels):
    align = [":---" if i < labels else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(description="Compare loads-runner with wrk against a local nginx.")
    parser.add_argument("--pairs", type=int, default=3, help="number of wrk/loads pairs (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of each run (default 5)")
    parser.add_argument("--connections", type=int, default=50,
                        help="wrk connections = loads virtual users (default 50)")
    parser.add_argument("--runner", default=None,
                        help="loads-runner binary (default $LOADS_BIN_DIR/loads-runner, else build/bin/loads-runner)")
    parser.add_argument("--wrk", default="wrk", help="wrk binary (default: wrk on PATH)")
    parser.add_argument("--wrk-only", action="store_true", help="run only wrk (a baseline; no loads-runner needed)")
    parser.add_argument("--access-log", action="store_true",
                        help="let nginx write its access log (off by default, as usual for wrk comparisons)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/performance.md)")
    args = parser.parse_args()
    for name in ("pairs", "duration", "connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.runner is None:
        bin_dir = os.environ.get("LOADS_BIN_DIR")
        args.runner = os.path.join(bin_dir, "loads-runner") if bin_dir else os.path.join(REPO, "build", "bin", "loads-runner")
    return args


def check_tools(args):
    """Fail before starting anything when a tool is missing."""
    wrk = shutil.which(args.wrk)
    if wrk is None:
        raise BenchError(f"wrk not found ({args.wrk}); install it: apt-get install wrk")
    args.wrk = wrk
    if not args.wrk_only:
        if not os.path.isfile(args.runner):
            raise BenchError(f"loads-runner not found at {args.runner}: build the project, "
                             "or give --runner PATH (or use --wrk-only)")
        if not os.access(args.runner, os.X_OK):
            raise BenchError(f"{args.runner} is not executable")


def main():
    args = parse_args()
    # Turn SIGTERM/SIGHUP into an exception too, so the `with` below stops nginx.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    try:
        check_tools(args)
        runs = []
        with harness.Nginx(access_log=args.access_log) as nginx, \
                tempfile.TemporaryDirectory(prefix="loads-bench-") as workdir:
            url = nginx.url
            setup = (f"nginx {nginx_version()} (one process, access log {'on' if args.access_log else 'off'}) "
                     f"on 127.0.0.1; {args.pairs} pair(s) of {args.duration} s runs; {args.connections} connections "
                     f"(wrk -t1 -c{args.connections}"
                     f"{'' if args.wrk_only else f', loads-runner -u {args.connections} --threads 1'}); "
                     f"{os.cpu_count()} CPUs shared by server and client")
            print(f"# {setup}", file=sys.stderr)
            for pair in range(args.pairs):
                # Swap the order every pair, so neither tool always runs on a
                # "warmer" (or more throttled) machine than the other.
                order = ["wrk", "loads"] if pair % 2 == 0 else ["loads", "wrk"]
                for tool in order:
                    if tool == "loads" and args.wrk_only:
                        continue
                    print(f"# pair {pair + 1}/{args.pairs}: {tool} ...", file=sys.stderr)
                    if tool == "wrk":
                        run = run_wrk(args.wrk, url, args.connections, args.duration, workdir)
                    else:
                        run = run_loads(args.runner, url, args.connections, args.duration, workdir)
                    run["pair"] = pair + 1
                    if run["errors"]:
                        print(f"# warning: {tool} saw {run['errors']} errors in this run", file=sys.stderr)
                    runs.append(run)
    except (BenchError, harness.HarnessError) as error:
        print(f"vs_wrk: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vs_wrk: interrupted (nginx stopped)", file=sys.stderr)
        return 130

    rows, summary = build_tables(runs)
    render = render_markdown if args.markdown else render_text
    print(setup)
    print()
    print(render(RUN_HEADER, rows, labels=2))
    print()
    print(render(SUMMARY_HEADER, summary, labels=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

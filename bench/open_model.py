#!/usr/bin/python3
"""The open model's own cost and its scheduling jitter, against the same local nginx as vs_wrk.py.

Alternates, in one sitting, pairs of

    loads-runner --url URL -u C -d S --threads 1          (closed: as fast as nginx answers)
    loads-runner --url URL --rate R -d S --max-users C --threads 1
                                                          (open: R = 90% of the closed rate)

where R is 90% of the median closed rate of a first calibration run. For each it prints the
requests per second, the requests per CPU-second of the client (its own user + system time, from
wait4), the schedule lag of the open runs (p50, p99, max: how late executions started after
their intended start) and their drops; then the medians and the ratio open/closed of requests per
CPU-second, which is the open model's overhead (a timer per arrival, a user handed each one).

    /usr/bin/python3 bench/open_model.py [--pairs 3] [--duration 5] [--connections 50]

With --idle-rates 1000,5000,20000 it runs instead the open model at those rates, well below what
the client can do, on the default threads, and prints the CPU the client used (cores, the median
of --pairs runs): the cost of waiting between arrivals, which a shared machine's target pays for.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "bench"))
import harness  # noqa: E402
from vs_wrk import BenchError, run_measured  # noqa: E402


def run(runner, url, args, workdir, threads=("--threads", "1")):
    report_path = os.path.join(workdir, "report.json")
    argv = [runner, "--url", url, *args, *threads, "--quiet", "--output",
            f"json:{report_path}"]
    code, stdout, stderr, cpu, wall = run_measured(argv, 120, workdir)
    if code != 0:
        raise BenchError(f"loads-runner exited with {code}: {stderr[-500:]}")
    with open(report_path) as f:
        report = json.load(f)
    lag = report.get("schedule_lag_seconds") or {}
    return {"requests": report["hits"], "seconds": report["duration_seconds"],
            "rps": report["rps"], "cpu": cpu, "per_cpu": report["hits"] / cpu if cpu else 0,
            "lag_p50": lag.get("p50"), "lag_p99": lag.get("p99"), "lag_max": lag.get("max"),
            "dropped": report["executions"]["dropped"],
            "p99": report["latency_seconds"]["p99"]}


def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runner", default=os.path.join(REPO, "build", "bin", "loads-runner"))
    parser.add_argument("--idle-rates", help="comma-separated rates: measure idle CPU instead")
    args = parser.parse_args()
    if args.idle_rates:
        return idle(args)
    try:
        with harness.Nginx(access_log=False) as nginx, \
                tempfile.TemporaryDirectory(prefix="loads-bench-") as workdir:
            closed_args = ["-u", str(args.connections), "-d", str(args.duration)]
            calibration = run(args.runner, nginx.url, closed_args, workdir)
            rate = round(0.9 * calibration["rps"])
            print(f"# nginx on 127.0.0.1, access log off; closed: -u {args.connections}; open: "
                  f"--rate {rate} (90% of the calibration run's {calibration['rps']:.0f}/s); "
                  f"{args.duration} s runs, --threads 1, {os.cpu_count()} CPUs shared",
                  file=sys.stderr)
            runs = []
            for pair in range(args.pairs):
                order = ["closed", "open"] if pair % 2 == 0 else ["open", "closed"]
                for model in order:
                    # The same concurrency as the closed runs: --max-users C.
                    extra = closed_args if model == "closed" else [
                        "--rate", str(rate), "-d", str(args.duration), "--max-users",
                        str(args.connections)]
                    r = run(args.runner, nginx.url, extra, workdir)
                    r.update(model=model, pair=pair + 1)
                    runs.append(r)
                    print(f"# pair {pair + 1}: {model}: {r['rps']:.0f}/s", file=sys.stderr)
    except (BenchError, harness.HarnessError) as error:
        print(f"open_model: {error}", file=sys.stderr)
        return 1
    print(f"| pair | model | requests/s | requests per CPU-second | p99 | schedule lag p50 "
          f"| schedule lag p99 | schedule lag max | dropped |")
    print("|---:|:---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['pair']} | {r['model']} | {r['rps']:.0f} | {r['per_cpu']:.0f} | "
              f"{ms(r['p99'])} ms | {ms(r['lag_p50'])} ms | {ms(r['lag_p99'])} ms | "
              f"{ms(r['lag_max'])} ms | {r['dropped']} |")
    medians = {}
    for model in ("closed", "open"):
        mine = [r for r in runs if r["model"] == model]
        medians[model] = {k: statistics.median(r[k] for r in mine) for k in ("rps", "per_cpu")}
        lags = [r["lag_p99"] for r in mine if r["lag_p99"] is not None]
        print(f"| median | {model} | {medians[model]['rps']:.0f} | "
              f"{medians[model]['per_cpu']:.0f} | | | "
              f"{ms(statistics.median(lags)) if lags else '-'} ms | | |")
    print()
    print(f"open/closed requests per CPU-second: "
          f"{medians['open']['per_cpu'] / medians['closed']['per_cpu']:.2f}")
    return 0


def idle(args):
    try:
        rates = [int(r) for r in args.idle_rates.split(",")]
    except ValueError:
        print(f"open_model: --idle-rates: not a list of integers: {args.idle_rates}",
              file=sys.stderr)
        return 2
    rows = []
    try:
        with harness.Nginx(access_log=False) as nginx, \
                tempfile.TemporaryDirectory(prefix="loads-bench-") as workdir:
            for rate in rates:
                runs = [run(args.runner, nginx.url,
                            ["--rate", str(rate), "-d", str(args.duration), "--max-users",
                             str(args.connections)], workdir, threads=())
                        for _ in range(args.pairs)]
                rows.append((rate, runs))
                print(f"# rate {rate}: done", file=sys.stderr)
    except (BenchError, harness.HarnessError) as error:
        print(f"open_model: {error}", file=sys.stderr)
        return 1
    print(f"# {args.pairs} runs of {args.duration} s per rate, default threads, "
          f"{os.cpu_count()} CPUs; medians")
    print("| --rate | requests/s | client CPU (cores) | schedule lag p99 | dropped |")
    print("|---:|---:|---:|---:|---:|")
    for rate, runs in rows:
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        cores = statistics.median(r["cpu"] / r["seconds"] for r in runs)
        print(f"| {rate} | {med('rps'):.0f} | {cores:.2f} | {ms(med('lag_p99'))} ms | "
              f"{med('dropped'):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

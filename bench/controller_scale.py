#!/usr/bin/env python3
"""How loads-controller copes with many workers: simulated workers (DEALER sockets in this
process, speaking docs/wire-protocol.md) each send one snapshot a second with many URL names;
the script measures the controller's CPU use, the delay from a snapshot's send to its
appearance on the controller's published stream and to its acknowledgement (sent once the
merge is written to the state folder), and checks that the merged hits are exact. It runs the
controller without and with a state folder (--no-state, --state-dir), alternated, and prints one
row per run and the medians of each.

    /usr/bin/python3 bench/controller_scale.py [--workers 1000] [--seconds 10] [--urls 20]
                                               [--pairs 2]
"""

import argparse
import os
import subprocess
import sys
import multiprocessing
import shutil
import statistics
import tempfile
import time
import uuid

import grpc
import msgpack
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from python_worker import SDK, histogram  # noqa: E402
from test_distributed import generate_stubs  # noqa: E402


def read_stream(publish, run_id, expected, pipe):
    """In a child process: subscribes to the run's snapshots and sends back their delays (ms)."""
    context = zmq.Context()
    subscriber = context.socket(zmq.SUB)
    subscriber.setsockopt(zmq.RCVHWM, 0)
    subscriber.connect(publish)
    subscriber.setsockopt(zmq.SUBSCRIBE, run_id.encode())
    pipe.send("subscribed")
    delays = []
    deadline = time.monotonic() + 300
    while len(delays) < expected and time.monotonic() < deadline:
        if subscriber.poll(100):
            _, frame = subscriber.recv_multipart()
            received = time.time_ns()
            sent = msgpack.unpackb(frame, raw=False, strict_map_key=False)["t1"]
            delays.append((received - sent) / 1e6)
    pipe.send(delays)
    subscriber.close()
    context.term()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def run_once(args, pb, rpc, with_state):
    """One run of the simulation; returns its measurements."""
    state_dir = tempfile.mkdtemp(prefix="loads-bench-state-") if with_state else None
    controller = subprocess.Popen(
        [args.controller, "--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish",
         "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0", "--max-local-workers", "0",
         "--worker-timeout", "30", *(["--state-dir", state_dir] if with_state else ["--no-state"])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    words = controller.stdout.readline().split()
    grpc_address = words[words.index("grpc") + 1]
    endpoint = words[words.index("zmq") + 1]
    publish = words[words.index("publish") + 1]
    context = zmq.Context()
    context.setsockopt(zmq.MAX_SOCKETS, args.workers + 100)
    pack = lambda m: msgpack.packb(dict({"v": 2}, **m))
    try:
        sockets = []
        for i in range(args.workers):
            s = context.socket(zmq.DEALER)
            s.setsockopt(zmq.ROUTING_ID, f"sim-{i}/{os.urandom(8).hex()}".encode())
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            s.send(pack({"type": "hello", "worker": f"sim-{i}", "token": "", "threads": 1,
                         "sdk": SDK, "run": ""}))
            sockets.append(s)
        channel = grpc.insecure_channel(grpc_address)
        stub = rpc.ControllerStub(channel)
        while len(stub.ListWorkers(pb.ListWorkersRequest()).workers) < args.workers:
            time.sleep(0.1)
        run_id = str(uuid.uuid4())
        # The published stream is read by another process, so that neither the sending of
        # snapshots nor Python's global lock delays their reception (the delay would then be the
        # simulator's, not the controller's).
        results, child_end = multiprocessing.Pipe()
        reader = multiprocessing.Process(
            target=read_stream, args=(publish, run_id, args.workers * args.seconds, child_end))
        reader.start()
        if not results.poll(10):
            sys.exit("controller_scale: the stream reader did not start")
        results.recv()  # subscribed
        time.sleep(0.5)
        stub.StartRun(pb.StartRunRequest(run_id=run_id, spec=pb.RunSpec(
            url="http://127.0.0.1:9/", users=[args.workers], hits=[1], workers=args.workers)))

        index = {s: i for i, s in enumerate(sockets)}
        poller = zmq.Poller()
        for s in sockets:
            poller.register(s, zmq.POLLIN)
        sent_at = {}  # (worker, seq) -> time.monotonic() of the send
        ack_delays = []

        def read_all(timeout_ms, on_message):
            for s, _ in poller.poll(timeout_ms):
                while True:
                    try:
                        message = msgpack.unpackb(s.recv(zmq.NOBLOCK), raw=False)
                    except zmq.Again:
                        break
                    on_message(index[s], message)

        def on_ack(i, message):
            if message["type"] == "ack" and (i, message["seq"]) in sent_at:
                ack_delays.append((time.monotonic() - sent_at.pop((i, message["seq"]))) * 1000)

        def drain(kind):
            """Reads every socket until each has seen a message of `kind`."""
            waiting = set(range(args.workers))

            def on_message(i, message):
                if message["type"] == kind:
                    waiting.discard(i)
                    if kind == "assign":
                        sockets[i].send(pack({"type": "ready", "worker": f"sim-{i}", "run": run_id}))

            deadline = time.monotonic() + 60
            while waiting and time.monotonic() < deadline:
                read_all(500, on_message)
            if waiting:
                sys.exit(f"controller_scale: {len(waiting)} workers never got '{kind}'")

        drain("assign")
        drain("start")
        latencies = [200_000 + 37 * k for k in range(50)]  # a few buckets per histogram
        urls = {f"GET /item/{u}": [len(latencies), 0, histogram(latencies)] for u in range(args.urls)}
        hits_per_snapshot = len(latencies) * args.urls
        cpu_before, wall_before = cpu_seconds(controller.pid), time.monotonic()
        for second in range(1, args.seconds + 1):
            round_start = time.monotonic()
            for i, s in enumerate(sockets):
                now = time.time_ns()
                sent_at[(i, second)] = time.monotonic()
                s.send(msgpack.packb({
                    "v": 1, "type": "snapshot", "run": run_id, "worker": f"sim-{i}",
                    "seq": second, "t0": now - 1_000_000_000, "t1": now,
                    "final": second == args.seconds, "hits": hits_per_snapshot,
                    "latency": histogram(latencies * args.urls),
                    "status": {200: hits_per_snapshot}, "hit_errors": {},
                    "outcomes": [1 if second == args.seconds else 0, 0, 0], "ws": [0] * 6,
                    "errors": {}, "counters": {}, "urls": urls}))
            # Acknowledgements are read while waiting for the next round.
            while time.monotonic() - round_start < 1.0:
                read_all(int(max(1, (1.0 - (time.monotonic() - round_start)) * 1000)), on_ack)
        read_all(1000, on_ack)
        if not results.poll(60):
            sys.exit("controller_scale: the stream reader got no result")
        delays = results.recv()
        reader.join()
        cpu = cpu_seconds(controller.pid) - cpu_before
        wall = time.monotonic() - wall_before
        for i, s in enumerate(sockets):
            s.send(pack({"type": "done", "worker": f"sim-{i}", "run": run_id, "ok": True,
                         "message": "", "seq": args.seconds, "left": False}))
        run = stub.GetRun(pb.GetRunRequest(run_id=run_id))
        deadline = time.monotonic() + 30
        while run.state != pb.RUN_STATE_DONE and time.monotonic() < deadline:
            time.sleep(0.1)
            run = stub.GetRun(pb.GetRunRequest(run_id=run_id))
        channel.close()
        return {
            "state": "state folder" if with_state else "none",
            "cpu": 100 * cpu / wall,
            "p50": percentile(delays, 50), "p99": percentile(delays, 99), "max": max(delays),
            "ack_p50": percentile(ack_delays, 50) if ack_delays else float("nan"),
            "ack_p99": percentile(ack_delays, 99) if ack_delays else float("nan"),
            "acked": len(ack_delays),
            "published": len(delays),
            "hits": run.hits,
            "expected": args.workers * args.seconds * hits_per_snapshot,
            "done": run.state == pb.RUN_STATE_DONE,
        }
    finally:
        controller.terminate()
        controller.wait(timeout=10)
        context.destroy(linger=0)
        if state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--urls", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=2,
                        help="runs without and with a state folder, alternated")
    parser.add_argument("--controller", default=os.path.join(ROOT, "build", "bin", "loads-controller"))
    args = parser.parse_args()
    if not os.access(args.controller, os.X_OK):
        sys.exit(f"controller_scale: {args.controller} not found; build first (scripts/build.sh)")
    pb, rpc = generate_stubs(tempfile.mkdtemp(prefix="loads-stubs-"))
    runs = []
    print("| state | workers | snapshots/s | URL names | controller CPU | published p50 | "
          "published p99 | acknowledged p50 | acknowledged p99 | merged hits |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
    for _ in range(args.pairs):
        for with_state in (False, True):
            r = run_once(args, pb, rpc, with_state)
            runs.append(r)
            exact = "exact" if r["hits"] == r["expected"] and r["done"] else f"expected {r['expected']}"
            print(f"| {r['state']} | {args.workers} | {args.workers} | {args.urls} | "
                  f"{r['cpu']:.0f}% of a core | {r['p50']:.1f} ms | {r['p99']:.1f} ms | "
                  f"{r['ack_p50']:.1f} ms | {r['ack_p99']:.1f} ms | {r['hits']} ({exact}) |",
                  flush=True)
    for state in ("none", "state folder"):
        mine = [r for r in runs if r["state"] == state]
        print(f"| median, {state} | | | | {statistics.median(r['cpu'] for r in mine):.0f}% | "
              f"{statistics.median(r['p50'] for r in mine):.1f} ms | "
              f"{statistics.median(r['p99'] for r in mine):.1f} ms | "
              f"{statistics.median(r['ack_p50'] for r in mine):.1f} ms | "
              f"{statistics.median(r['ack_p99'] for r in mine):.1f} ms | |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How loads-controller copes with many workers: simulated workers (DEALER sockets in this
process, speaking docs/wire-protocol.md) each send one snapshot a second with many URL names;
the script measures the controller's CPU use and the delay from a snapshot's send to its
appearance on the controller's published stream, and checks that the merged hits are exact.

    /usr/bin/python3 bench/controller_scale.py [--workers 1000] [--seconds 10] [--urls 20]
"""

import argparse
import os
import subprocess
import sys
import multiprocessing
import tempfile
import time
import uuid

import grpc
import msgpack
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from python_worker import histogram  # noqa: E402
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--urls", type=int, default=20)
    parser.add_argument("--controller", default=os.path.join(ROOT, "build", "bin", "loads-controller"))
    args = parser.parse_args()
    if not os.access(args.controller, os.X_OK):
        sys.exit(f"controller_scale: {args.controller} not found; build first (scripts/build.sh)")

    pb, rpc = generate_stubs(tempfile.mkdtemp(prefix="loads-stubs-"))
    controller = subprocess.Popen(
        [args.controller, "--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:*", "--publish",
         "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0", "--max-local-workers", "0",
         "--worker-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    words = controller.stdout.readline().split()
    grpc_address = words[words.index("grpc") + 1]
    endpoint = words[words.index("zmq") + 1]
    publish = words[words.index("publish") + 1]
    context = zmq.Context()
    context.setsockopt(zmq.MAX_SOCKETS, args.workers + 100)
    try:
        sockets = []
        for i in range(args.workers):
            s = context.socket(zmq.DEALER)
            s.setsockopt(zmq.ROUTING_ID, f"sim-{i}".encode())
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            s.send(msgpack.packb({"v": 1, "type": "hello", "worker": f"sim-{i}", "token": "",
                                  "threads": 1, "sdk": "sim"}))
            sockets.append(s)
        stub = rpc.ControllerStub(grpc.insecure_channel(grpc_address))
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

        def drain(kind):
            """Reads every socket until each has seen a message of `kind`."""
            waiting = set(range(args.workers))
            poller = zmq.Poller()
            for s in sockets:
                poller.register(s, zmq.POLLIN)
            deadline = time.monotonic() + 60
            while waiting and time.monotonic() < deadline:
                for s, _ in poller.poll(500):
                    i = index[s]
                    while True:
                        try:
                            message = msgpack.unpackb(s.recv(zmq.NOBLOCK), raw=False)
                        except zmq.Again:
                            break
                        if message["type"] == kind:
                            waiting.discard(i)
                            if kind == "assign":
                                s.send(msgpack.packb({"v": 1, "type": "ready", "worker": f"sim-{i}",
                                                      "run": run_id}))
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
                s.send(msgpack.packb({
                    "v": 1, "type": "snapshot", "run": run_id, "worker": f"sim-{i}",
                    "seq": second, "t0": now - 1_000_000_000, "t1": now,
                    "final": second == args.seconds, "hits": hits_per_snapshot,
                    "latency": histogram(latencies * args.urls),
                    "status": {200: hits_per_snapshot}, "hit_errors": {},
                    "outcomes": [1 if second == args.seconds else 0, 0, 0], "ws": [0] * 6,
                    "errors": {}, "counters": {}, "urls": urls}))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - round_start)))
        if not results.poll(60):
            sys.exit("controller_scale: the stream reader got no result")
        delays = results.recv()
        reader.join()
        published = len(delays)
        cpu = cpu_seconds(controller.pid) - cpu_before
        wall = time.monotonic() - wall_before
        for i, s in enumerate(sockets):
            s.send(msgpack.packb({"v": 1, "type": "done", "worker": f"sim-{i}", "run": run_id,
                                  "ok": True, "message": ""}))
        run = stub.GetRun(pb.GetRunRequest(run_id=run_id))
        deadline = time.monotonic() + 30
        while run.state != pb.RUN_STATE_DONE and time.monotonic() < deadline:
            time.sleep(0.1)
            run = stub.GetRun(pb.GetRunRequest(run_id=run_id))
        expected = args.workers * args.seconds * hits_per_snapshot
        print(f"| workers | snapshots/s | URL names | controller CPU | delay p50 | delay p99 | "
              f"delay max | snapshots published | merged hits |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
        print(f"| {args.workers} | {args.workers} | {args.urls} | {100 * cpu / wall:.0f}% of a core "
              f"| {percentile(delays, 50):.1f} ms | {percentile(delays, 99):.1f} ms | "
              f"{max(delays):.1f} ms | {published}/{args.workers * args.seconds} | "
              f"{run.hits} ({'exact' if run.hits == expected else f'expected {expected}'}) |")
    finally:
        controller.terminate()
        controller.wait(timeout=10)
        context.destroy(linger=0)


if __name__ == "__main__":
    main()

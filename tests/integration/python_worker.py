"""A worker in Python, written from docs/wire-protocol.md alone: the seed's promise that a worker
can be written in any language. It does not send HTTP requests itself; it reports the results it
is given (fixed latencies), which the tests then find in the controller's merged report.

Usage as a program: python_worker.py ENDPOINT WORKER_ID LATENCIES_NS...
"""

import os
import sys
import time

import msgpack
import zmq


# The controller refuses workers of another major.minor SDK version.
SDK = "0.1.0"


def bucket_index(value):
    """The flat histogram bucket of a value (nanoseconds), as the document defines it."""
    if value < 2048:
        return value
    shift = value.bit_length() - 1 - 10
    return 2048 + (shift - 1) * 1024 + ((value >> shift) - 1024)


def histogram(values):
    """[count, min, max, sum, delta-coded (index, count) pairs]."""
    counts = {}
    for v in values:
        counts[bucket_index(v)] = counts.get(bucket_index(v), 0) + 1
    flat, previous = [], 0
    for index in sorted(counts):
        flat += [index - previous, counts[index]]
        previous = index
    if not values:
        return [0, 0, 0, 0, []]
    return [len(values), min(values), max(values), sum(values), flat]


def snapshot(run, worker, seq, latencies, final):
    # Version 1 on purpose (no "users", no "methods"): the controller still accepts it.
    now = time.time_ns()
    return {"v": 1, "type": "snapshot", "run": run, "worker": worker, "seq": seq,
            "t0": now - 1_000_000_000, "t1": now, "final": final, "hits": len(latencies),
            "latency": histogram(latencies), "status": {200: len(latencies)}, "hit_errors": {},
            "outcomes": [len(latencies), 0, 0], "ws": [0] * 6, "errors": {},
            "counters": {"python": len(latencies)},
            "urls": {"GET /python": [len(latencies), 0, histogram(latencies)]}}


def serve(endpoint, worker_id, latencies, runs=1, timeout=20.0):
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    # The routing id: the name and a nonce, so that nobody else can speak for this worker.
    socket.setsockopt(zmq.ROUTING_ID, f"{worker_id}/{os.urandom(8).hex()}".encode())
    socket.setsockopt(zmq.LINGER, 1000)
    socket.connect(endpoint)
    send = lambda m: socket.send(msgpack.packb(dict({"v": 2}, **m), use_bin_type=True))
    send({"type": "hello", "worker": worker_id, "token": "", "threads": 1, "sdk": SDK, "run": ""})
    deadline = time.monotonic() + timeout
    closed_runs = 0
    while closed_runs < runs and time.monotonic() < deadline:
        if not socket.poll(200):
            send({"type": "heartbeat", "worker": worker_id})
            continue
        message = msgpack.unpackb(socket.recv(), raw=False, strict_map_key=False)
        kind = message["type"]
        if kind == "assign":
            send({"type": "ready", "worker": worker_id, "run": message["run"]})
        elif kind == "start":
            run = message["run"]
            half = len(latencies) // 2
            socket.send(msgpack.packb(snapshot(run, worker_id, 1, latencies[:half], False)))
            # A duplicate is ignored by the controller.
            socket.send(msgpack.packb(snapshot(run, worker_id, 1, latencies[:half], False)))
            socket.send(msgpack.packb(snapshot(run, worker_id, 2, latencies[half:], True)))
            send({"type": "done", "worker": worker_id, "run": run, "ok": True, "message": "",
                  "seq": 2, "left": False})
        elif kind == "ack" and message["closed"]:
            # Every result of the run is merged and stored: nothing more to keep.
            closed_runs += 1
    socket.close()
    context.term()
    return closed_runs


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3:]])

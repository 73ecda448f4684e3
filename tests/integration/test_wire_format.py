"""The snapshot and control messages are plain msgpack, readable and writable from another
language exactly as docs/wire-protocol.md describes them. This test uses Python's msgpack module
as the reference client: it decodes the golden bytes the C++ encoder produces
(tests/testdata/snapshot_v6.hex and control_v2.hex, checked byte for byte by the C++ unit tests)
and re-encodes the documented structures to the same bytes.
"""

import os
import unittest

import msgpack

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata",
                      "snapshot_v6.hex")


def bucket_index(value):
    """The flat bucket index of a latency value, as the document defines it."""
    if value < 2048:
        return value
    top = value.bit_length() - 1
    shift = top - 10
    return 2048 + (shift - 1) * 1024 + ((value >> shift) - 1024)


class WireFormatTest(unittest.TestCase):
    def setUp(self):
        with open(GOLDEN) as f:
            self.golden = bytes.fromhex(f.read().strip())

    def test_decodes_the_documented_fields(self):
        doc = msgpack.unpackb(self.golden, raw=False, strict_map_key=False)
        self.assertEqual(doc["v"], 6)
        # The WebSocket timings (version 5), empty here.
        self.assertEqual(doc["ws_connect"], [0, 0, 0, 0, []])
        self.assertEqual(doc["ws_round_trip"], [0, 0, 0, 0, []])
        # The load model's measures (version 3).
        self.assertEqual(doc["rate"], 2.5)
        self.assertEqual((doc["started"], doc["dropped"], doc["missed_pace"]), (2, 1, 0))
        self.assertEqual(doc["corrected"][:4], [2, 1500, 2500, 4000])
        self.assertEqual(doc["lag"][:4], [1, 500, 500, 500])
        self.assertEqual(doc["type"], "snapshot")
        self.assertEqual((doc["run"], doc["worker"], doc["seq"]), ("r", "w", 1))
        self.assertEqual(doc["t1"] - doc["t0"], 1_000_000_000)
        self.assertIs(doc["final"], False)
        self.assertEqual(doc["users"], 3)
        self.assertEqual(doc["hits"], 2)
        # Status classes by method: [no response, 1xx, 2xx, 3xx, 4xx, 5xx].
        self.assertEqual(doc["methods"], {"GET": [0, 0, 2, 0, 0, 0]})
        self.assertEqual(doc["status"], {200: 2})
        self.assertEqual(doc["outcomes"], [1, 1, 0])
        self.assertEqual(doc["errors"], {"F": 1})
        self.assertEqual(doc["counters"], {"c": 11})
        count, low, high, total, buckets = doc["latency"]
        self.assertEqual((count, low, high, total), (2, 1000, 2000, 3000))
        # Delta-coded (index, count) pairs.
        index, decoded = 0, []
        for delta, n in zip(buckets[::2], buckets[1::2]):
            index += delta
            decoded.append((index, n))
        self.assertEqual(decoded, [(bucket_index(1000), 1), (bucket_index(2000), 1)])
        self.assertEqual(doc["urls"]["U"][:2], [2, 0])

    def test_encodes_to_the_same_bytes(self):
        histogram = [2, 1000, 2000, 3000, [1000, 1, 1000, 1]]
        doc = {"v": 6, "type": "snapshot", "run": "r", "worker": "w", "seq": 1,
               "t0": 1_700_000_000_000_000_000, "t1": 1_700_000_001_000_000_000, "final": False,
               "users": 3, "rate": 2.5, "hits": 2, "latency": histogram, "status": {200: 2},
               "hit_errors": {}, "outcomes": [1, 1, 0], "started": 2, "dropped": 1,
               "missed_pace": 0, "corrected": [2, 1500, 2500, 4000, [1500, 1, 774, 1]],
               "lag": [1, 500, 500, 500, [500, 1]], "methods": {"GET": [0, 0, 2, 0, 0, 0]},
               "ws": [0] * 6, "ws_connect": [0, 0, 0, 0, []],
               "ws_round_trip": [0, 0, 0, 0, []], "errors": {"F": 1}, "counters": {"c": 11},
               "urls": {"U": [2, 0, histogram]}}
        self.assertEqual(msgpack.packb(doc, use_bin_type=True).hex(), self.golden.hex())

    def test_control_messages_encode_to_the_same_bytes(self):
        # The documented fields of each message, in the order the document lists them.
        documented = {
            "hello": {"v": 2, "type": "hello", "worker": "w", "token": "t", "threads": 2,
                      "sdk": "0.1.0", "run": "r"},
            "welcome": {"v": 2, "type": "welcome", "worker": "w", "heartbeat_ms": 1000, "run": "r"},
            "ack": {"v": 2, "type": "ack", "run": "r", "seq": 3, "closed": True},
            "done": {"v": 2, "type": "done", "worker": "w", "run": "r", "ok": True, "message": "",
                     "seq": 3, "left": False},
            "rejoin": {"v": 2, "type": "rejoin"},
            "refused": {"v": 2, "type": "refused", "message": "wrong token"},
            "bye": {"v": 2, "type": "bye", "worker": "w"},
        }
        path = os.path.join(os.path.dirname(GOLDEN), "control_v2.hex")
        with open(path) as f:
            golden = dict(line.split() for line in f if line.strip() and not line.startswith("#"))
        self.assertEqual(set(golden), set(documented))
        for name, doc in documented.items():
            self.assertEqual(msgpack.packb(doc).hex(), golden[name], name)
            self.assertEqual(msgpack.unpackb(bytes.fromhex(golden[name]), raw=False), doc)

    def test_bucket_index_of_large_values(self):
        # 1,000,000 ns: top bit 19, shift 9, (1_000_000 >> 9) = 1953.
        self.assertEqual(bucket_index(1_000_000), 2048 + 8 * 1024 + (1953 - 1024))


if __name__ == "__main__":
    unittest.main()

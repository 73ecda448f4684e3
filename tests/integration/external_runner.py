#!/usr/bin/env python3
"""An external runner (docs/external-runners.md) in Python: it plays one virtual user, sending
LOADS_TOTAL_HITS GET requests to LOADS_SERVER_URL (or looping for LOADS_DURATION seconds), and
reports each request and each execution as a JSON line on stdout. With --fail-every N every Nth
execution is reported as a failure.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main():
    fail_every = int(sys.argv[sys.argv.index("--fail-every") + 1]) if "--fail-every" in sys.argv else 0
    url = os.environ["LOADS_SERVER_URL"]
    hits = int(os.environ.get("LOADS_TOTAL_HITS", "0"))
    deadline = time.monotonic() + float(os.environ.get("LOADS_DURATION", "0"))
    emit({"counter": {"name": "users started", "value": 1}})
    n = 0
    while (n < hits) if hits else (time.monotonic() < deadline):
        n += 1
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
                status = response.status
            emit({"hit": {"method": "GET", "url": url, "status": status,
                          "elapsed": time.monotonic() - started}})
        except urllib.error.HTTPError as e:
            status = e.code
            emit({"hit": {"method": "GET", "url": url, "status": status,
                          "elapsed": time.monotonic() - started}})
        except OSError as e:
            emit({"hit": {"method": "GET", "url": url, "error": "connection_refused"}})
            emit({"execution": {"outcome": "error", "message": str(e)}})
            continue
        if fail_every and n % fail_every == 0:
            emit({"execution": {"outcome": "failure", "message": "deliberate"}})
        else:
            emit({"execution": {"outcome": "success"}})
    print("a line that is not an event")


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the run was stopped: loads-runner no longer reads
    except SystemExit:
        raise

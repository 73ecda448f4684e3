"""Helpers for the integration tests of Loads (no test cases here).

The tests drive the real binaries (loads-runner, loads-demo-target) against
real servers started on 127.0.0.1 only:

  * Nginx      - a private nginx (own config, prefix and logs in a temp dir)
  * DemoTarget - the project's loads-demo-target
  * WsServer   - a small WebSocket server that counts what it sends

and run the runner through run_runner() / RunnerProcess, which always ask for
the JSON report so the tests can assert on exact numbers.

Requirements: Debian's /usr/bin/python3 (3.11) with the standard library and
Debian's python3-websockets 10.4 (asyncio API), nginx-light, openssl.
Every subprocess started here is bounded by a timeout and stopped on exit.
Set LOADS_KEEP_TMP=1 to keep the temp dirs (nginx config and logs, runner
output) for a post-mortem.
"""

import asyncio
import collections
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

LOOPBACK = "127.0.0.1"
NGINX_BINARY = "/usr/sbin/nginx"

# What a crashed or badly failing C++ process leaves on stderr; an error
# path of the runner must never print any of these.
CRASH_MARKERS = (
    "Traceback",
    "terminate called",
    "Segmentation fault",
    "core dumped",
    "Aborted",
    "AddressSanitizer",
    "runtime error:",  # UBSan
)


class HarnessError(RuntimeError):
    """The test environment is not usable (missing binary, server did not start...)."""


# --------------------------------------------------------------------------
# Locating the binaries under test


def _dir_from_env(variable, what):
    value = os.environ.get(variable)
    if not value:
        raise HarnessError(
            f"{variable} is not set: point it at the build's {what} folder "
            f"(for example {variable}=/work/main/build/{what}); "
            "ctest sets it for you")
    if not os.path.isdir(value):
        raise HarnessError(f"{variable}={value} is not a directory (is the project built?)")
    return os.path.abspath(value)


def bin_dir():
    return _dir_from_env("LOADS_BIN_DIR", "bin")


def examples_dir():
    """Folder holding the bundled test libraries (pass it as --test-path)."""
    return _dir_from_env("LOADS_EXAMPLES_DIR", "examples")


def binary(name):
    path = os.path.join(bin_dir(), name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise HarnessError(f"{path} does not exist or is not executable (is the project built?)")
    return path


def runner_path():
    return binary("loads-runner")


def demo_target_path():
    return binary("loads-demo-target")


# --------------------------------------------------------------------------
# Ports


def _openssl(*args, cwd=None):
    done = subprocess.run(["openssl", *args], cwd=cwd, timeout=60, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise HarnessError(f"openssl {args[0]} failed:\n{done.stderr.decode(errors='replace')}")


def make_ca(directory, name):
    """A certificate authority (self-signed, EC key) in `directory`: returns
    (cert_path, key_path). A runner trusts it with SSL_CERT_FILE=cert_path."""
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    _openssl("req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_certificate(directory, name, ca, san, expired=False):
    """A server certificate signed by `ca` (from make_ca) for the subjectAltName
    `san` ("IP:127.0.0.1", "DNS:example.test"); expired=True makes one whose
    validity ended in 2020. Returns (cert_path, key_path)."""
    work = os.path.join(directory, f"{name}.ca")
    os.makedirs(work)
    with open(os.path.join(work, "index.txt"), "w"):
        pass
    with open(os.path.join(work, "serial"), "w") as f:
        f.write(secrets.token_hex(8) + "\n")
    config = os.path.join(work, "ca.conf")
    with open(config, "w") as f:
        f.write(f"""[ ca ]
default_ca = test_ca
[ test_ca ]
database = {work}/index.txt
new_certs_dir = {work}
serial = {work}/serial
default_md = sha256
policy = policy_any
copy_extensions = copy
[ policy_any ]
commonName = supplied
""")
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    csr = os.path.join(work, "request.csr")
    _openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}")
    dates = (["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] if expired
             else ["-days", "2"])
    _openssl("ca", "-batch", "-notext", "-config", config, "-cert", ca[0], "-keyfile", ca[1],
             "-in", csr, "-out", cert, *dates)
    return cert, key


def free_port():
    """A loopback TCP port that was free a moment ago.

    There is a small race (someone may take it before we bind it again), so
    the servers that bind a chosen port (Nginx) retry with another one when
    the port turns out to be taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class ClosedPort:
    """A loopback port where every connection is refused, for as long as the
    context is open.

    The socket is bound but never listens: the kernel answers connection
    attempts with RST (ECONNREFUSED), and since we keep the port bound no
    parallel test can start listening on it meanwhile.
    """

    def __enter__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}/"
        return self

    def __exit__(self, *exc):
        self._sock.close()


def wait_for_port(port, timeout=10.0, process=None, what="server"):
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise HarnessError(f"{what} exited with code {process.returncode} before accepting connections")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise HarnessError(f"{what} does not accept connections on port {port} after {timeout}s")
            time.sleep(0.05)


def stop_process(process, first_signal=signal.SIGTERM, timeout=5.0):
    """Signal a child, wait for it, escalate to SIGKILL if it hangs; always reaps it."""
    if process.poll() is not None:
        return process.returncode
    try:
        process.send_signal(first_signal)
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=timeout)


def http_get(url, timeout=5.0, verify=True):
    """(status, body bytes) of a GET, without raising on 4xx/5xx."""
    context = None
    if url.startswith("https:") and not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --------------------------------------------------------------------------
# nginx


class Nginx:
    """A private nginx on 127.0.0.1, configured and logged in its own temp dir.

    Endpoints (on the HTTP port, and on the HTTPS port when https=True):
      /            200 "ok\\n"
      /redirect/N  302 to /redirect/N-1, ..., /redirect/1 302 to /  (N <= 10)
      /fail        500
      /static/NAME a file of static_files ({name: size in bytes}, sparse zeros)
      /headers/K   200 with about K KiB of extra response header fields
                   (header_kib=[K, ...])

    certificate=(cert_path, key_path) serves HTTPS with that certificate
    instead of a fresh self-signed one for 127.0.0.1.

    access_log=True logs one line per request ("METHOD URI STATUS") so tests
    can compare what the runner reports with what the server really saw.
    Without `buffer=` nginx writes each line as the request finishes.
    """

    MAX_REDIRECTS = 10

    def __init__(self, https=False, access_log=True, static_files=None, header_kib=(),
                 certificate=None, redirect_to=None):
        self.https = https or certificate is not None
        # /away answers a 302 to this URL (another origin), when given.
        self.redirect_to = redirect_to
        self.access_log = access_log
        self.static_files = dict(static_files or {})
        self.header_kib = list(header_kib)
        self.certificate = certificate
        # Answer of a private readiness URL: proves that what answers on our
        # port is this nginx and not something else that holds the port.
        self._token = secrets.token_hex(8)
        self.port = None
        self.https_port = None
        self.process = None
        self.dir = None

    # Addresses -----------------------------------------------------------

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def https_url(self):
        if not self.https:
            raise HarnessError("this Nginx was created without https=True")
        return f"https://{LOOPBACK}:{self.https_port}/"

    # Lifecycle -----------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if not os.access(NGINX_BINARY, os.X_OK):
            raise HarnessError(f"{NGINX_BINARY} not found: install nginx-light (scripts/install-deps.sh)")
        self.dir = tempfile.mkdtemp(prefix="loads-nginx-")
        try:
            if self.certificate:
                self.cert_path, self.key_path = self.certificate
            elif self.https:
                self._make_certificate()
            if self.static_files:
                os.makedirs(os.path.join(self.dir, "static"))
                for name, size in self.static_files.items():
                    with open(os.path.join(self.dir, "static", name), "wb") as f:
                        f.truncate(size)  # sparse: no disk space, nginx sends zeros
            # A port chosen by free_port() may be taken by a parallel test
            # before nginx binds it: then try again with other ports.
            for attempt in range(5):
                self.port = free_port()
                self.https_port = free_port() if self.https else None
                self._write_config()
                if self._launch():
                    return
            raise HarnessError("nginx could not bind a free port after 5 attempts")
        except BaseException:
            self.stop()
            raise

    def _launch(self):
        """Start nginx; True once it serves, False if its port was taken."""
        # Forget the logs of a previous attempt, so only this one's errors are read.
        for path in (self.error_log_path, os.path.join(self.dir, "stderr.log")):
            if os.path.exists(path):
                os.remove(path)
        self._stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.process = subprocess.Popen(
            [NGINX_BINARY, "-p", self.dir, "-c", self.config_path, "-e", self.error_log_path],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr)
        try:
            self._wait_ready(self.url)
            if self.https:
                self._wait_ready(self.https_url)
            return True
        except HarnessError:
            stop_process(self.process)
            self.process = None
            self._stderr.close()
            logs = self._read(self.error_log_path) + self._read(os.path.join(self.dir, "stderr.log"))
            if "Address already in use" in logs:
                return False
            raise HarnessError(f"nginx did not start; its logs:\n{logs}")

    def _wait_ready(self, base_url, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise HarnessError(f"nginx exited with code {self.process.returncode}")
            try:
                status, body = http_get(base_url + "__harness_ready", timeout=1.0, verify=False)
                if status == 200 and body.decode(errors="replace") == self._token:
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise HarnessError(f"nginx does not answer on {base_url} after {timeout}s")
            time.sleep(0.05)

    def stop(self):
        """Graceful stop (SIGQUIT), then SIGTERM/SIGKILL if it hangs; removes the temp dir."""
        if self.process is not None:
            stop_process(self.process, first_signal=signal.SIGQUIT)
            self.process = None
            self._stderr.close()
        if self.dir is not None and not os.environ.get("LOADS_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # Configuration -------------------------------------------------------

    @property
    def config_path(self):
        return os.path.join(self.dir, "nginx.conf")

    @property
    def error_log_path(self):
        return os.path.join(self.dir, "error.log")

    @property
    def access_log_path(self):
        return os.path.join(self.dir, "access.log")

    def _make_certificate(self):
        # A throwaway self-signed certificate for 127.0.0.1; an EC key is quick to generate.
        self.cert_path = os.path.join(self.dir, "cert.pem")
        self.key_path = os.path.join(self.dir, "key.pem")
        done = subprocess.run(
            ["openssl", "req", "-x509", "-nodes", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", self.key_path, "-out", self.cert_path,
             "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            timeout=30, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise HarnessError(f"openssl could not make a certificate:\n{done.stderr.decode(errors='replace')}")

    def _locations(self):
        lines = [
            '    location = / { return 200 "ok\\n"; }',
            "    location = /fail { return 500; }",
            # For _wait_ready(); not logged, so the access log holds only the tests' requests.
            f'    location = /__harness_ready {{ access_log off; return 200 "{self._token}"; }}',
        ]
        # The same chain as the demo target: /redirect/3 -> /redirect/2 -> /redirect/1 -> /.
        # nginx turns the relative target into an absolute Location (absolute_redirect on).
        for n in range(1, self.MAX_REDIRECTS + 1):
            target = "/" if n == 1 else f"/redirect/{n - 1}"
            lines.append(f"    location = /redirect/{n} {{ return 302 {target}; }}")
        if self.redirect_to:
            lines.append(f"    location = /away {{ return 302 {self.redirect_to}; }}")
        if self.static_files:
            lines.append(f"    location /static/ {{ root {self.dir}; }}")
        for kib in self.header_kib:
            # One field per KiB: a configuration token may not be much longer than 4 KiB.
            fields = "".join(f" add_header X-Filler-{i} {'x' * 1000};" for i in range(kib))
            lines.append(f'    location = /headers/{kib} {{{fields} return 200 "ok\\n"; }}')
        return "\n".join(lines)

    def _write_config(self):
        d = self.dir
        if self.access_log:
            access_log = (
                "  log_format loads_simple '$request_method $request_uri $status';\n"
                f"  access_log {d}/access.log loads_simple;")
        else:
            access_log = "  access_log off;"
        https_server = ""
        if self.https:
            https_server = f"""
  server {{
    listen {LOOPBACK}:{self.https_port} ssl;
    ssl_certificate {self.cert_path};
    ssl_certificate_key {self.key_path};
{self._locations()}
  }}"""
        config = f"""# Written by tests/integration/harness.py; everything stays in {d}.
daemon off;
# One process: simple to stop, and on a 2-core machine one nginx worker is
# what leaves the other core to the load generator.
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
# Room for every user a run may have open at once (the open model's default is at most 10,000):
# short of connections, nginx closes kept-alive ones and stops accepting, and a brief stall of the
# machine would turn into resets and dropped arrivals that are nginx's, not the runner's.
worker_rlimit_nofile 16384;

events {{
  worker_connections 12288;
}}

http {{
  default_type text/plain;
{access_log}
  # Never close a kept-alive connection because of its request count: a
  # load generator reuses its connections for the whole run.
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  # nginx creates these at start-up; the packaged defaults are under /var.
  client_body_temp_path {d}/client_body_temp;
  proxy_temp_path {d}/proxy_temp;
  fastcgi_temp_path {d}/fastcgi_temp;
  uwsgi_temp_path {d}/uwsgi_temp;
  scgi_temp_path {d}/scgi_temp;

  server {{
    # A frozen nginx (SIGSTOP) must queue a second's worth of new connections: with nginx's
    # default backlog of 511 the kernel's accept queue overflows and some are reset.
    listen {LOOPBACK}:{self.port} backlog=4096;
{self._locations()}
  }}{https_server}
}}
"""
        with open(self.config_path, "w") as f:
            f.write(config)

    # Access log ----------------------------------------------------------

    def access_log_entries(self, settle=0.2, timeout=3.0):
        """[(method, uri, status)] of every request logged so far.

        nginx writes a line when a request is finalized, which can be a hair
        after the client got its response; so wait until the log stops
        growing for `settle` seconds (at most `timeout`).
        """
        if not self.access_log:
            raise HarnessError("this Nginx was created with access_log=False")
        deadline = time.monotonic() + timeout
        size = -1
        while True:
            new_size = os.path.getsize(self.access_log_path) if os.path.exists(self.access_log_path) else 0
            if new_size == size or time.monotonic() > deadline:
                break
            size = new_size
            time.sleep(settle)
        entries = []
        for line in self._read(self.access_log_path).splitlines():
            if not line.strip():
                continue
            # "METHOD URI STATUS"; split from both ends so an odd request line still counts.
            method, _, rest = line.partition(" ")
            uri, _, status = rest.rpartition(" ")
            entries.append((method, uri, int(status) if status.isdigit() else 0))
        return entries

    def wait_for_requests(self, minimum=1, timeout=10.0):
        """Wait until nginx has logged at least `minimum` requests (no settling:
        for use while a load is still running)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._read(self.access_log_path).count("\n") >= minimum:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"nginx logged fewer than {minimum} requests in {timeout}s")
            time.sleep(0.05)

    def access_log_count(self):
        """Number of requests nginx has logged."""
        return len(self.access_log_entries())

    def status_counts(self):
        """{status code (int): count} from the access log."""
        return dict(collections.Counter(status for _, _, status in self.access_log_entries()))

    @staticmethod
    def _read(path):
        try:
            with open(path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


# --------------------------------------------------------------------------
# loads-demo-target


class DemoTarget:
    """Runs `loads-demo-target --port 0` and learns its port from its first line."""

    BANNER = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")

    def __init__(self, start_timeout=10.0):
        self.start_timeout = start_timeout
        self.process = None
        self.port = None

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def ws_url(self):
        return f"ws://{LOOPBACK}:{self.port}/ws"

    def __enter__(self):
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [demo_target_path(), "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        # Read stdout in a thread: the first line gives the port, and whatever
        # comes later is drained so the target never blocks on a full pipe.
        lines = queue.Queue()
        self._reader = threading.Thread(target=self._drain, args=(self.process.stdout, lines), daemon=True)
        self._reader.start()
        try:
            first = lines.get(timeout=self.start_timeout)
        except queue.Empty:
            self._fail("printed no banner line")
        match = self.BANNER.search(first or "")
        if not match:
            self._fail(f"printed an unexpected first line {first!r}")
        self.port = int(match.group(1))
        wait_for_port(self.port, process=self.process, what="loads-demo-target")
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self._stop()
        self._stderr.close()

    def _stop(self):
        stop_process(self.process)
        self._reader.join(timeout=5)  # it ends at the end of the output
        self.process.stdout.close()
        self.process = None

    @staticmethod
    def _drain(stream, lines):
        for raw in stream:
            lines.put(raw.decode(errors="replace"))
        lines.put(None)  # end of output

    def _fail(self, what):
        self._stop()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        raise HarnessError(f"loads-demo-target {what}; stderr:\n{stderr}")

    def stats(self):
        """The target's /stats counters."""
        status, body = http_get(self.url + "stats")
        if status != 200:
            raise HarnessError(f"/stats answered {status}")
        return json.loads(body)


class StatsDelta:
    """What the demo target counted between the creation of this object and
    a call to delta(), not counting our own /stats requests.

    Whether the target counts a /stats request, and whether in its own
    answer or only from the next one on, is its business: two reads in a row
    tell us how much one /stats request adds, and that is subtracted. The
    short pauses let a counter that is bumped after the response catch up.
    """

    SETTLE_SECONDS = 0.05

    def __init__(self, target):
        self.target = target
        first = self._read()
        self.start = self._read()
        self.per_stats_request = self.start["requests"] - first["requests"]

    def _read(self):
        time.sleep(self.SETTLE_SECONDS)
        return self.target.stats()

    def delta(self):
        now = self._read()
        result = {key: now[key] - self.start[key] for key in now}
        result["requests"] -= self.per_stats_request
        return result


# --------------------------------------------------------------------------
# WebSocket server


class WsServer:
    """A WebSocket server on 127.0.0.1 that, on every connection, sends
    `messages` messages of `size` bytes, then closes normally (code 1000).

    With `echo_delay` (seconds) it instead echoes every message it receives,
    each after that delay, until the client closes; `handshake_delay` holds
    every opening handshake that long (to check the runner's WebSocket times).

    It counts what it really sent so a test can compare it with what the
    runner says it received. It runs in its own thread with its own asyncio
    loop (websockets 10.4 has no synchronous server).
    """

    def __init__(self, messages=5, size=1000, binary=False, echo_delay=None, handshake_delay=0):
        self.messages = messages
        self.size = size
        self.binary = binary
        self.echo_delay = echo_delay
        self.handshake_delay = handshake_delay
        self.port = None
        self._lock = threading.Lock()
        self._connections = 0
        self._active = 0
        self._completed = 0
        self._messages_sent = 0
        self._bytes_sent = 0
        self._ready = threading.Event()
        self._error = None
        self._loop = None

    @property
    def url(self):
        return f"ws://{LOOPBACK}:{self.port}/"

    @property
    def connections(self):
        with self._lock:
            return self._connections

    @property
    def completed(self):
        """Connections that got all their messages and answered our close frame."""
        with self._lock:
            return self._completed

    @property
    def messages_sent(self):
        with self._lock:
            return self._messages_sent

    @property
    def bytes_sent(self):
        with self._lock:
            return self._bytes_sent

    def wait_idle(self, timeout=10.0):
        """Wait until no connection is being handled any more: after the
        client has gone, the server thread may still be finishing the last
        handlers, and their counts are not final before that."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._active == 0:
                    return
            if time.monotonic() > deadline:
                raise HarnessError(f"WsServer still has open connections after {timeout}s")
            time.sleep(0.02)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="WsServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise HarnessError("WsServer did not start within 10s")
        if self._error is not None:
            raise HarnessError(f"WsServer failed to start: {self._error!r}")
        return self

    def __exit__(self, *exc):
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)

    def _run(self):
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to __enter__ if it happens at start-up
            self._error = error
            self._ready.set()

    async def _serve(self):
        import websockets  # Debian's python3-websockets 10.4

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # compression=None: with permessage-deflate the bytes on the wire
        # would differ from the payload bytes that are being compared.
        async def delay_handshake(path, headers):
            if self.handshake_delay:
                await asyncio.sleep(self.handshake_delay)
            return None

        async with websockets.serve(self._handle, LOOPBACK, 0, compression=None,
                                    process_request=delay_handshake) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _payload(self, index):
        # Exactly `size` bytes of ASCII, different for every message.
        text = (f"{index}:" + "abcdefghijklmnopqrstuvwxyz" * (self.size // 26 + 1))[: self.size]
        return text.encode() if self.binary else text

    async def _handle(self, websocket):
        import websockets

        with self._lock:
            self._connections += 1
            self._active += 1
        try:
            if self.echo_delay is not None:
                async for message in websocket:
                    await asyncio.sleep(self.echo_delay)
                    await websocket.send(message)
                    with self._lock:
                        self._messages_sent += 1
                        self._bytes_sent += len(message)
                return
            for index in range(self.messages):
                await websocket.send(self._payload(index))
                with self._lock:
                    self._messages_sent += 1
                    self._bytes_sent += self.size
            await websocket.close(code=1000, reason="done")
            # close() also returns when the peer just drops the TCP
            # connection; then the close code is 1006 instead of the
            # peer's answer to our close frame.
            if websocket.close_code != 1006:
                with self._lock:
                    self._completed += 1
        except websockets.ConnectionClosed:
            pass  # the client left early; what was sent is already counted
        finally:
            with self._lock:
                self._active -= 1


# --------------------------------------------------------------------------
# Running loads-runner


RunResult = collections.namedtuple("RunResult", "code stdout stderr report")
RunResult.__doc__ = """Outcome of one loads-runner run: exit code, stdout, stderr,
and the parsed JSON report (None if the runner wrote none)."""


def _runner_env(extra_env):
    env = dict(os.environ)
    # A developer's own LOADS_TEST_PATH must not change what the tests find.
    env.pop("LOADS_TEST_PATH", None)
    if extra_env:
        env.update(extra_env)
    return env


class RunnerProcess:
    """A loads-runner started in the background (for tests that signal it).

    Always passes `--output json:<tmpfile>` first, so the report can be read
    back; runs in a fresh temp dir so the "current folder" part of the test
    path holds nothing unexpected (unless cwd is given).
    """

    def __init__(self, args, env=None, cwd=None):
        runner = runner_path()
        self.tmp = tempfile.mkdtemp(prefix="loads-run-")
        self.report_path = os.path.join(self.tmp, "report.json")
        self.args = [runner, "--output", f"json:{self.report_path}"] + [str(a) for a in args]
        self._stdout = open(os.path.join(self.tmp, "stdout"), "w+b")
        self._stderr = open(os.path.join(self.tmp, "stderr"), "w+b")
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr,
            cwd=cwd or self.tmp, env=_runner_env(env))

    def interrupt(self):
        self.process.send_signal(signal.SIGINT)

    def interrupt_and_wait(self, timeout=15.0):
        """Ctrl-C, then wait: returns (RunResult, seconds from the signal to the exit)."""
        self.interrupt()
        interrupted_at = time.monotonic()
        result = self.wait(timeout=timeout)
        return result, time.monotonic() - interrupted_at

    def close(self):
        """Kill the runner if it still runs and remove its temp dir (safe to call twice)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._stdout.close()
        self._stderr.close()
        if not os.environ.get("LOADS_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def wait(self, timeout=60.0):
        """Wait for the exit (killing it past `timeout`) and collect a RunResult."""
        try:
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise HarnessError(
                    f"loads-runner did not finish within {timeout}s and was killed: "
                    f"{' '.join(self.args)}\nstdout:\n{self._text(self._stdout)[-3000:]}"
                    f"\nstderr:\n{self._text(self._stderr)[-3000:]}")
            return RunResult(code, self._text(self._stdout), self._text(self._stderr), self._report())
        finally:
            self.close()

    @staticmethod
    def _text(f):
        f.seek(0)
        return f.read().decode(errors="replace")

    def _report(self):
        try:
            with open(self.report_path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as error:
            # A report that is not JSON is a bug of the runner, not "no report".
            raise AssertionError(f"the JSON report is not valid JSON ({error}):\n{text[:3000]}")


def run_runner(args, timeout=60.0, env=None, cwd=None):
    """Run loads-runner to completion. Returns RunResult(code, stdout, stderr, report)."""
    return RunnerProcess(args, env=env, cwd=cwd).wait(timeout=timeout)


# --------------------------------------------------------------------------
# Reading results


def stdout_value(stdout, label):
    """The text after `label:` on the first stdout line that starts with it
    (leading spaces allowed), or None."""
    match = re.search(rf"^\s*{re.escape(label)}:\s*(.*?)\s*$", stdout, re.MULTILINE)
    return match.group(1) if match else None


def stdout_int(stdout, label):
    """The integer that starts the `label:` line's value (e.g. `Hits: 200` -> 200)."""
    value = stdout_value(stdout, label)
    match = re.match(r"\d+", value or "")
    if not match:
        raise AssertionError(f"no '{label}: <integer>' line in the runner's stdout:\n{stdout}")
    return int(match.group(0))


def describe(result):
    """A readable dump of a run, for assertion messages."""
    report = json.dumps(result.report)[:4000] if result.report is not None else "None"
    return (f"\nexit code: {result.code}\nstdout:\n{result.stdout[-3000:]}"
            f"\nstderr:\n{result.stderr[-3000:]}\nreport: {report}")


def assert_no_crash(testcase, result):
    """The runner ended by itself (not killed by a signal) and printed no crash trace."""
    testcase.assertGreaterEqual(result.code, 0, "loads-runner was killed by a signal" + describe(result))
    for marker in CRASH_MARKERS:
        testcase.assertNotIn(marker, result.stderr, describe(result))


def nonzero(counts):
    """A {name: count} map without its zero entries (a report may list every
    kind with 0 or only the kinds that happened; both mean the same)."""
    return {key: value for key, value in (counts or {}).items() if value}


LATENCY_ORDER = ("min", "p50", "p90", "p95", "p99", "p99_9", "max")


def assert_report_consistent(testcase, result, hits_add_up=True):
    """Checks every report must pass, whatever the test:
    the format tag, tests.total = success + failures + errors, ordered
    latency percentiles, and (hits_add_up) every hit ended either with a
    status code or with a network error, so the two maps sum to `hits`."""
    report = result.report
    testcase.assertIsNotNone(report, "no JSON report was written" + describe(result))
    testcase.assertEqual(report.get("format"), "loads.report", describe(result))
    testcase.assertEqual(report.get("version"), 1, describe(result))
    tests = report["tests"]
    testcase.assertEqual(tests["total"], tests["success"] + tests["failures"] + tests["errors"],
                         "tests.total is not success + failures + errors" + describe(result))
    latency = report.get("latency_seconds") or {}
    values = [latency.get(key) for key in LATENCY_ORDER]
    if report["hits"] > 0 and all(isinstance(v, (int, float)) for v in values):
        testcase.assertEqual(values, sorted(values), "latency percentiles are not ordered" + describe(result))
        testcase.assertGreaterEqual(values[0], 0)
    if hits_add_up:
        answered = sum(report.get("status_codes", {}).values())
        failed = sum(report.get("hit_errors", {}).values())
        testcase.assertEqual(answered + failed, report["hits"],
                             "status_codes + hit_errors do not add up to hits" + describe(result))


# --------------------------------------------------------------------------
# loads-controller and loads-worker


class Controller:
    """loads-controller on free loopback ports, with its own state folder, and workers started
    by hand. kill() and restart() bring it back on the same ports with the same flags and state,
    as an operator (or Kubernetes) would."""

    def __init__(self, extra=("--max-local-workers", "2"), worker_timeout="1.5"):
        self.state_dir = tempfile.mkdtemp(prefix="loads-state-")
        self.extra = tuple(extra)
        self.worker_timeout = worker_timeout
        self.workers = []
        self.process = None
        # What loads-runner needs besides --controller to reach it (--tls-ca ... for TLS).
        self.client_args = ()
        self._start("127.0.0.1:0", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "127.0.0.1:0")

    def _start(self, grpc, zmq, publish, metrics):
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [binary("loads-controller"), "--grpc", grpc, "--zmq", zmq, "--publish", publish,
             "--metrics", metrics, "--state-dir", self.state_dir,
             "--worker-timeout", self.worker_timeout, *self.extra],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        line = self.process.stdout.readline()
        parts = line.split()
        if "listening:" not in line:
            self._stderr.seek(0)
            raise HarnessError(f"controller did not start: {line!r} "
                               f"{self._stderr.read().decode(errors='replace')}")
        self.grpc = parts[parts.index("grpc") + 1]
        self.zmq = parts[parts.index("zmq") + 1]
        self.publish = parts[parts.index("publish") + 1]
        self.metrics = parts[parts.index("metrics") + 1]
        self.web = parts[parts.index("web") + 1] if "web" in parts else None
        self.health = parts[parts.index("health") + 1] if "health" in parts else None

    @property
    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def kill(self):
        """SIGKILL: nothing is flushed, nothing is said to anyone."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.process.stdout.close()

    def restart(self, timeout=20):
        """Starts it again on the same ports (retrying while the old ones are released)."""
        metrics_port = self.metrics.rsplit(":", 1)[1].split("/")[0]
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._start(self.grpc, self.zmq, self.publish, f"127.0.0.1:{metrics_port}")
                return
            except HarnessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start_workers(self, n, *args, endpoint=None):
        """n loads-worker processes named w0, w1... (connecting to `endpoint`, by default the
        controller's), waiting until they have registered."""
        runner = binary("loads-runner")
        for _ in range(n):
            self.workers.append(subprocess.Popen(
                [binary("loads-worker"), "--controller", endpoint or self.zmq,
                 "--id", f"w{len(self.workers)}", *args],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Until they have registered, a run would make the controller launch workers of its own.
        live = sum(worker.poll() is None for worker in self.workers)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ping = subprocess.run([runner, "--controller", self.grpc, "--ping",
                                   *self.client_args],
                                  capture_output=True, text=True, timeout=10)
            registered = re.search(r"^(\d+) worker\(s\)$", ping.stdout, re.M)
            if registered and int(registered.group(1)) >= live:
                return
            time.sleep(0.1)
        raise HarnessError(f"{live} workers did not register: {ping.stdout}")

    def close(self):
        for worker in self.workers:
            stop_process(worker)
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)
        if self.process is not None and not self.process.stdout.closed:
            self.process.stdout.close()
        self._stderr.close()
        if not os.environ.get("LOADS_KEEP_TMP"):
            shutil.rmtree(self.state_dir, ignore_errors=True)


class TcpProxy:
    """A TCP forwarder on a free loopback port in front of `target` (host, port), whose traffic
    can be cut and restored, as a network partition would: while cut, nothing is forwarded
    either way (connections stay open, the kernel holds what was sent), and new connections
    wait. Used where iptables is not at hand."""

    def __init__(self, target_port):
        import selectors
        self._selectors = selectors
        self.target = (LOOPBACK, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="TcpProxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return f"tcp://{LOOPBACK}:{self.port}"

    def cut(self):
        self._cut.set()

    def restore(self):
        self._cut.clear()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self):
        selector = self._selectors.DefaultSelector()
        selector.register(self._listener, self._selectors.EVENT_READ, None)
        peers = {}  # socket -> its other end
        waiting = []  # accepted while cut
        while not self._stop.is_set():
            if not self._cut.is_set():
                for client in waiting:
                    self._connect(client, selector, peers)
                waiting.clear()
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    if self._cut.is_set():
                        waiting.append(client)
                    else:
                        self._connect(client, selector, peers)
                    continue
                if self._cut.is_set() or sock not in peers:
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                other = peers[sock]
                if not data:
                    for s in (sock, other):
                        peers.pop(s, None)
                        try:
                            selector.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        s.close()
                    continue
                try:
                    other.sendall(data)
                except OSError:
                    pass
            if self._cut.is_set():
                time.sleep(0.01)
        for s in list(peers) + waiting:
            s.close()
        selector.close()

    def _connect(self, client, selector, peers):
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        peers[client] = upstream
        peers[upstream] = client
        selector.register(client, self._selectors.EVENT_READ, None)
        selector.register(upstream, self._selectors.EVENT_READ, None)

"""loads-controller --launcher kubernetes against a FAKE Kubernetes API server.

No Kubernetes can run here, so tests/k8s/fake_apiserver.mjs stands in for the API server: it is
a fake, not Kubernetes. It serves the pod calls over HTTPS (its certificate signed by a CA this
test makes, which the controller must verify), checks the bearer token, validates every posted
pod with the npm package kubernetes-models (the real API's schemas) and a strict unknown-field
check, and plays the kubelet: a pod whose image is healthy becomes a real loads-worker process,
others fail the way a cluster would (image pull error, crash, unschedulable, RBAC refusal).
"""

import itertools
import json
import random
import string
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import ssl
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "..", "k8s", "fake_apiserver.mjs")
SA_TOKEN = "sa-token-123"
WORKER_TOKEN = "worker-s3cret"


def make_pki(folder):
    """A CA, a server certificate for 127.0.0.1 signed by it, one for another address signed by
    it, and another CA."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def ca(name, subject):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{folder}/{name}.key",
                "-out", f"{folder}/{name}.crt", "-days", "2", "-subj", subject)

    def server(name, address):
        with open(f"{folder}/{name}.cnf", "w") as f:
            f.write(f"subjectAltName=IP:{address}\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{folder}/{name}.key",
                "-out", f"{folder}/{name}.csr", "-subj", "/CN=kubernetes")
        openssl("x509", "-req", "-in", f"{folder}/{name}.csr", "-CA", f"{folder}/ca.crt",
                "-CAkey", f"{folder}/ca.key", "-CAcreateserial", "-out", f"{folder}/{name}.crt",
                "-days", "2", "-extfile", f"{folder}/{name}.cnf")

    ca("ca", "/CN=fake-cluster-ca")
    server("server", "127.0.0.1")
    server("wrong-name", "127.0.0.2")  # the right CA, another address: the name is checked too
    ca("other", "/CN=some-other-ca")  # did not sign the server's certificate


class FakeApiServer:
    def __init__(self, pki, certificate="server", faults=()):
        self.scratch = tempfile.mkdtemp(prefix="loads-fake-kubelet-")
        self.process = subprocess.Popen(
            ["node", FAKE, "--cert", f"{pki}/{certificate}.crt",
             "--key", f"{pki}/{certificate}.key",
             "--token", SA_TOKEN, "--worker-bin", harness.binary("loads-worker"),
             "--scratch", self.scratch, "--secret", f"loads-tokens:worker-token={WORKER_TOKEN}",
             "--secret", "loads-curve:note=made by helm",
             *faults],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError("the fake API server did not start: " + self.process.stderr.read())
        self.url = f"https://127.0.0.1:{json.loads(line)['port']}"
        # The test's own look at the fake trusts its CA but not the name: one case serves a
        # certificate for another address on purpose, to see the controller refuse it.
        self.context = ssl.create_default_context(cafile=f"{pki}/ca.crt")
        self.context.check_hostname = False

    def get(self, path):
        with urllib.request.urlopen(self.url + path, context=self.context, timeout=5) as r:
            return json.load(r)

    def log(self):
        return self.get("/fake/log")

    def pods(self):
        return self.get("/fake/pods")

    def stats(self):
        return self.get("/fake/stats")

    def secrets(self):
        return self.get("/fake/secrets")

    def close(self):
        harness.stop_process(self.process)
        self.process.stdout.close()
        self.process.stderr.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class Cluster:
    """loads-controller with the Kubernetes launcher, pointed at the fake API server."""

    def __init__(self, api, pki, image="localhost/loads-worker:test", ca="ca.crt", extra=(),
                 state=False, zmq_port=None, grpc_port=None):
        self.dir = tempfile.mkdtemp(prefix="loads-sa-")
        with open(f"{self.dir}/token", "w") as f:
            f.write(SA_TOKEN + "\n")
        with open(f"{self.dir}/namespace", "w") as f:
            f.write("loadtest\n")
        shutil.copy(f"{pki}/{ca}", f"{self.dir}/ca.crt")
        with open(f"{self.dir}/worker-token", "w") as f:
            f.write(WORKER_TOKEN + "\n")
        zmq_port = zmq_port or harness.free_port()
        self.zmq_port = zmq_port
        env = dict(os.environ, LOADS_POD_NAME="loads-controller-7d9f", LOADS_POD_UID="uid-ctrl-1")
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [harness.binary("loads-controller"), "--grpc", f"127.0.0.1:{grpc_port or 0}",
             "--zmq", f"tcp://127.0.0.1:{zmq_port}", "--publish", "tcp://127.0.0.1:*",
             "--metrics", "127.0.0.1:0", "--token-file", f"{self.dir}/worker-token",
             "--launcher", "kubernetes", "--kubernetes-api", api.url,
             "--service-account-dir", self.dir, "--worker-image", image,
             "--worker-token-secret", "loads-tokens", "--advertise", f"tcp://127.0.0.1:{zmq_port}",
             "--instance", "perf", "--worker-pending-timeout", "3",
             "--image-pull-secret", "registry-creds", "--image-pull-policy", "Always",
             *([] if state else ["--no-state"]), *extra],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        line = self.process.stdout.readline()
        if "listening:" not in line:
            raise AssertionError(f"controller did not start: {line!r} {self.stderr()}")
        parts = line.split()
        self.grpc = parts[parts.index("grpc") + 1]
        self.grpc_port = int(self.grpc.rsplit(":", 1)[1])

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def run(self, *args, timeout=60):
        return harness.run_runner(["--controller", self.grpc, *args], timeout=timeout)

    def close(self):
        harness.stop_process(self.process)
        self.process.stdout.close()
        self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class KubernetesLauncherTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="loads-pki-")
        make_pki(cls.pki)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    def setUp(self):
        self.api = FakeApiServer(self.pki)
        self.clusters = []

    def tearDown(self):
        for cluster in self.clusters:
            cluster.close()
        self.api.close()

    def cluster(self, **kwargs):
        cluster = Cluster(self.api, self.pki, **kwargs)
        self.clusters.append(cluster)
        return cluster

    def created(self):
        return [e for e in self.api.log() if e["method"] == "POST"]

    def test_a_run_on_launched_pods_is_exact_and_its_pods_are_deleted(self):
        cluster = self.cluster()
        with harness.Nginx() as nginx:
            result = cluster.run("--url", nginx.url, "-u", "4", "--hits", "25", "--workers", "2",
                                 "--worker-cpu", "250m", "--worker-memory", "128Mi")
            self.assertEqual(result.code, 0, harness.describe(result))
            self.assertEqual(result.report["hits"], 100)
            self.assertEqual(nginx.access_log_count(), 100)
        posts = self.created()
        self.assertEqual(len(posts), 2)
        for post in posts:
            self.assertEqual(post["code"], 201, post.get("errors"))
            self.assertEqual(post["errors"], [])  # kubernetes-models and the unknown-field check
            pod = post["object"]
            self.assertEqual(post["path"], "/api/v1/namespaces/loadtest/pods")
            labels = pod["metadata"]["labels"]
            self.assertEqual(labels["app.kubernetes.io/name"], "loads")
            self.assertEqual(labels["app.kubernetes.io/instance"], "perf")
            self.assertEqual(labels["app.kubernetes.io/component"], "worker")
            self.assertEqual(labels["app.kubernetes.io/managed-by"], "loads-controller")
            owner = pod["metadata"]["ownerReferences"][0]
            self.assertEqual((owner["kind"], owner["name"], owner["uid"]),
                             ("Pod", "loads-controller-7d9f", "uid-ctrl-1"))
            spec = pod["spec"]
            self.assertEqual(spec["restartPolicy"], "Never")
            self.assertEqual(spec["imagePullSecrets"], [{"name": "registry-creds"}])
            self.assertIs(spec["automountServiceAccountToken"], False)
            self.assertIs(spec["securityContext"]["runAsNonRoot"], True)
            container = spec["containers"][0]
            self.assertEqual(container["image"], "localhost/loads-worker:test")
            self.assertEqual(container["resources"]["requests"], {"cpu": "250m", "memory": "128Mi"})
            self.assertEqual(container["resources"]["limits"], {"memory": "128Mi"})
            security = container["securityContext"]
            self.assertIs(security["readOnlyRootFilesystem"], True)
            self.assertIs(security["allowPrivilegeEscalation"], False)
            self.assertEqual(security["capabilities"]["drop"], ["ALL"])
            self.assertIn("--token-file", container["args"])
            self.assertEqual(container["imagePullPolicy"], "Always")
            # 250m of CPU: one engine thread, not one per node CPU.
            threads = container["args"][container["args"].index("--threads") + 1]
            self.assertEqual(threads, "1")
        # The run is over: its pods go.
        self.assertTrue(wait_until(lambda: not self.api.pods()), self.api.pods())
        deletes = [e for e in self.api.log() if e["method"] == "DELETE"]
        self.assertEqual(sorted(e["path"].rsplit("/", 1)[1] for e in deletes),
                         sorted(p["object"]["metadata"]["name"] for p in posts))

    def assert_run_fails(self, image, expected, timeout=30):
        cluster = self.cluster(image=image)
        with harness.Nginx() as nginx:
            result = cluster.run("--url", nginx.url, "-u", "2", "--hits", "5", "--workers", "2",
                                 timeout=timeout)
        self.assertNotEqual(result.code, 0, harness.describe(result))
        self.assertIn(expected, result.stdout + result.stderr, harness.describe(result))
        self.assertTrue(wait_until(lambda: not self.api.pods()), self.api.pods())
        return result

    def test_an_image_that_cannot_be_pulled_fails_the_run(self):
        self.assert_run_fails("localhost/bad-image:1", "cannot start: ErrImagePull")

    def test_a_crashing_pod_fails_the_run(self):
        self.assert_run_fails("localhost/crash:1", "exited: Error, exit code 1")

    def test_a_pod_pending_too_long_fails_the_run(self):
        started = time.monotonic()
        self.assert_run_fails("localhost/pending:1",
                              "still pending after 3 s (0/3 nodes are available: 3 Insufficient cpu.)")
        self.assertLess(time.monotonic() - started, 20)

    def test_an_api_refusal_is_reported_to_the_client(self):
        cluster = self.cluster(image="localhost/refuse:1")
        result = cluster.run("--url", "http://127.0.0.1:1/", "-u", "1", "--hits", "1")
        self.assertEqual(result.code, 7, harness.describe(result))
        self.assertIn("cannot create pod", result.stderr)
        self.assertIn("HTTP 403: pods is forbidden", result.stderr)

    def test_the_api_server_certificate_is_verified(self):
        cluster = self.cluster(ca="other.crt")
        result = cluster.run("--url", "http://127.0.0.1:1/", "-u", "1", "--hits", "1")
        self.assertEqual(result.code, 7, harness.describe(result))
        self.assertIn("cannot reach the Kubernetes API", result.stderr)
        self.assertEqual(self.created(), [])

    def test_a_certificate_for_another_name_is_refused(self):
        self.api.close()
        self.api = FakeApiServer(self.pki, certificate="wrong-name")
        cluster = self.cluster()
        result = cluster.run("--url", "http://127.0.0.1:1/", "-u", "1", "--hits", "1")
        self.assertEqual(result.code, 7, harness.describe(result))
        self.assertIn("cannot reach the Kubernetes API", result.stderr)
        self.assertEqual(self.created(), [])

    def test_a_launch_that_fails_halfway_is_undone(self):
        cluster = self.cluster(image="localhost/second-fails:1")
        result = cluster.run("--url", "http://127.0.0.1:1/", "-u", "2", "--hits", "1",
                             "--workers", "2")
        self.assertEqual(result.code, 7, harness.describe(result))
        self.assertIn("HTTP 403: ", result.stderr)
        self.assertIn("exceeded quota", result.stderr)
        posts = self.created()
        # In parallel: the refusal may come first; a quota refusal is not retried.
        self.assertEqual(sorted(p["code"] for p in posts), [201, 403])
        posts = [p for p in posts if p["code"] == 201]
        self.assertEqual(self.api.pods(), [])
        deleted = [e["path"].rsplit("/", 1)[1] for e in self.api.log() if e["method"] == "DELETE"]
        self.assertIn(posts[0]["object"]["metadata"]["name"], deleted)

    def test_pods_left_by_an_earlier_controller_are_deleted_at_start(self):
        first = self.cluster(image="localhost/pending:1", extra=("--worker-pending-timeout", "60"))
        started = harness.run_runner(["--controller", first.grpc, "--url", "http://127.0.0.1:1/",
                                      "-u", "1", "--hits", "1", "--detach"], timeout=20)
        self.assertEqual(started.code, 0, harness.describe(started))
        self.assertEqual(len(self.api.pods()), 1)
        first.process.kill()  # no chance to clean up, as when its container is killed
        first.process.wait()
        self.assertEqual(len(self.api.pods()), 1)
        # The same release (--instance perf) starts again without state: the pod's run is
        # unknown to it, so the pod goes at its first supervision round.
        self.cluster()
        self.assertTrue(wait_until(lambda: not self.api.pods(), timeout=10), self.api.pods())

    def test_a_restarted_controller_keeps_the_pods_of_its_running_run(self):
        state = tempfile.mkdtemp(prefix="loads-state-")
        self.addCleanup(shutil.rmtree, state, True)
        extra = ("--state-dir", state)
        first = self.cluster(extra=extra, state=True)
        with harness.Nginx() as nginx:
            process = harness.RunnerProcess(["--controller", first.grpc, "--url", nginx.url,
                                             "-u", "2", "-d", "8", "--workers", "2"])
            self.assertTrue(wait_until(lambda: nginx.access_log_count() > 0, timeout=20))
            pods = sorted(p["metadata"]["name"] for p in self.api.pods())
            self.assertEqual(len(pods), 2)
            first.process.kill()
            first.process.wait()
            # The container restarts (same pod, same ports): the run and its pods carry on.
            # Until it listens again, its port is free for anyone: a connection of a test running
            # alongside can take it as its local port. The kubelet would restart a controller
            # that cannot bind; so does this test, for up to 20 s (as harness.Controller does).
            deadline = time.monotonic() + 20
            while True:
                try:
                    second = self.cluster(extra=extra, state=True, zmq_port=first.zmq_port,
                                          grpc_port=first.grpc_port)
                    break
                except AssertionError as e:
                    taken = "cannot listen on" in str(e) or "Address already in use" in str(e)
                    if not taken or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            result = process.wait(timeout=60)
            self.assertEqual(result.code, 0, harness.describe(result) + second.stderr())
            self.assertEqual(result.report["hits"], nginx.access_log_count())
            self.assertEqual(result.report["run"]["controller_restarts"], 1)
            # Kept while the run ran (none was lost), deleted once it was over.
            self.assertEqual(result.report["run"]["lost_workers"], [])
            self.assertTrue(wait_until(lambda: not self.api.pods(), timeout=10))

    def test_stopping_a_run_deletes_its_pods_and_shutdown_deletes_the_rest(self):
        cluster = self.cluster()
        with harness.Nginx() as nginx:
            process = harness.RunnerProcess(["--controller", cluster.grpc, "--url", nginx.url,
                                             "-u", "2", "-d", "30", "--workers", "2"])
            self.assertTrue(wait_until(lambda: nginx.access_log_count() > 0, timeout=20))
            self.assertEqual(len(self.api.pods()), 2)
            result, _ = process.interrupt_and_wait(timeout=15)
            self.assertEqual(result.code, 130, harness.describe(result))
            self.assertTrue(wait_until(lambda: not self.api.pods()), self.api.pods())
        # Pods left pending when the controller stops are deleted on the way out.
        pending = self.cluster(image="localhost/pending:1", extra=("--worker-pending-timeout", "60"))
        started = harness.run_runner(["--controller", pending.grpc, "--url", "http://127.0.0.1:1/",
                                      "-u", "1", "--hits", "1", "--detach"], timeout=20)
        self.assertEqual(started.code, 0, harness.describe(started))
        self.assertEqual(len(self.api.pods()), 1)
        pending.close()
        self.clusters.remove(pending)
        self.assertEqual(self.api.pods(), [])

    def test_the_fake_refuses_what_kubernetes_would(self):
        """The fake's checks can fail: a pod without a container name, and a misspelt field."""
        def post(pod):
            request = urllib.request.Request(
                self.api.url + "/api/v1/namespaces/loadtest/pods", data=json.dumps(pod).encode(),
                headers={"Authorization": f"Bearer {SA_TOKEN}",
                         "Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, context=self.api.context, timeout=5) as r:
                    return r.status, json.load(r)
            except urllib.error.HTTPError as e:
                return e.code, json.load(e)
        good = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "localhost/pending:1"}]}}
        nameless = json.loads(json.dumps(good))
        del nameless["spec"]["containers"][0]["name"]
        code, status = post(nameless)
        self.assertEqual(code, 422)
        self.assertIn("containers/0 must have required property name", status["message"])
        misspelt = json.loads(json.dumps(good))
        misspelt["spec"]["restartPolicyy"] = "Never"
        code, status = post(misspelt)
        self.assertEqual(code, 422)
        self.assertIn("spec.restartPolicyy: unknown field", status["message"])
        self.assertEqual(post(good)[0], 201)

    def faulty_api(self, *faults):
        """Replaces this test's fake API server by one with FAULTS (fake_apiserver.mjs)."""
        self.api.close()
        self.api = FakeApiServer(self.pki, faults=[str(f) for f in faults])

    def assert_exact_run(self, cluster, workers=2):
        with harness.Nginx() as nginx:
            result = cluster.run("--url", nginx.url, "-u", "2", "--hits", "10", "--workers",
                                 str(workers), timeout=90)
            self.assertEqual(result.code, 0, harness.describe(result) + cluster.stderr())
            self.assertEqual(result.report["hits"], 20)  # 2 users' 10 hits, shared out
            self.assertEqual(nginx.access_log_count(), 20)
        self.assertTrue(wait_until(lambda: not self.api.pods(), timeout=30), self.api.pods())

    def test_a_throttling_conflicting_flaky_api_still_starts_runs(self):
        # Every 3rd call throttled (Retry-After: 1), every 5th unavailable, every 4th create a
        # conflict, every 3rd create made but its answer lost.
        self.faulty_api("--throttle-every", 3, "--unavailable-every", 5, "--conflict-every", 4,
                        "--lose-create-every", 3)
        cluster = self.cluster()
        self.assert_exact_run(cluster, workers=4)
        log = self.api.log()
        codes = {e.get("code") for e in log}
        self.assertTrue({429, 503, 409, 504} <= codes, codes)
        # Each pod created once, whatever the answers: a lost answer's retry found it made.
        posts = [e for e in log if e["method"] == "POST"]
        made = {p["object"]["metadata"]["name"] for p in posts if p["code"] in (201, 504)}
        self.assertEqual(len(made), 4, posts)
        for name in made:
            tries = [p for p in posts if p["object"]["metadata"]["name"] == name]
            for before, after in zip(tries, tries[1:]):
                if before["code"] == 429:
                    # Retry-After: 1 was obeyed.
                    self.assertGreaterEqual(after["at"] - before["at"], 950, tries)
            if tries[-1]["code"] == 409:
                self.assertIn(504, [t["code"] for t in tries])  # AlreadyExists after a lost answer
        self.assertTrue(all(e["userAgent"].startswith("loads-controller/0.") for e in log),
                        {e["userAgent"] for e in log})

    def test_a_slow_api_still_starts_runs(self):
        self.faulty_api("--delay-ms", 4000)
        cluster = self.cluster()
        started = time.monotonic()
        self.assert_exact_run(cluster, workers=3)
        # The three pods were created at once, not one after the other (3 x 4 s).
        posts = [e for e in self.api.log() if e["method"] == "POST"]
        self.assertEqual(len(posts), 3)
        self.assertLess(max(p["at"] for p in posts) - min(p["at"] for p in posts), 2000)
        self.assertLess(time.monotonic() - started, 60)

    def test_pods_are_watched_not_polled_and_a_dropped_watch_is_resumed(self):
        # Watches cut after 0.7 s, every 3rd answered 410 Gone, lists of one pod per page.
        self.faulty_api("--watch-drop-ms", 700, "--gone-every", 3, "--page-limit", 1)
        cluster = self.cluster()
        self.assert_exact_run(cluster, workers=3)  # runs start, and are exact
        # Three pods that never join keep a run waiting while the watch is cut and relisted.
        cluster.close()
        self.clusters.remove(cluster)
        idle = self.cluster(image="localhost/idle:1")
        runner = subprocess.Popen(
            [harness.binary("loads-runner"), "--controller", idle.grpc, "--url",
             "http://127.0.0.1:1/", "-u", "3", "--hits", "1", "--workers", "3"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_until(lambda: len(self.api.pods()) == 3))
            mark = len(self.api.log())
            # Resumed at once after each cut, listed again (in pages) after each 410.
            self.assertTrue(wait_until(
                lambda: sum(1 for e in self.api.log()[mark:] if e.get("gone")) >= 2, timeout=15),
                idle.stderr())
        finally:
            runner.kill()
            runner.wait()
        log = self.api.log()[mark:]
        watches = [e for e in log if e.get("watch")]
        self.assertTrue(any(w.get("dropped") for w in watches), watches)
        self.assertTrue(all("allowWatchBookmarks=true" in w["query"] for w in watches))
        gone = [i for i, e in enumerate(log) if e.get("gone")]
        relist = [e for e in log[gone[0] + 1:] if e["method"] == "GET"][:3]
        self.assertEqual([("watch" in e, "continue=" in e["query"]) for e in relist],
                         [(False, False), (False, True), (False, True)], relist)
        # The watch resumes from the list's version.
        after = [e for e in log[gone[0] + 1:] if e.get("watch")][0]
        self.assertNotIn("resourceVersion=1&", after["query"])
        # A failing pod is still seen through the cut watches.
        failing = self.cluster(image="localhost/bad-image:1")
        with harness.Nginx() as nginx:
            result = failing.run("--url", nginx.url, "-u", "2", "--hits", "1", "--workers", "2")
        self.assertNotEqual(result.code, 0, harness.describe(result))
        self.assertIn("cannot start: ErrImagePull", result.stdout + result.stderr)

    def test_a_watch_replaces_polling(self):
        cluster = self.cluster()
        with harness.Nginx() as nginx:
            result = cluster.run("--url", nginx.url, "-u", "2", "-d", "4", "--workers", "2",
                                 timeout=60)
            self.assertEqual(result.code, 0, harness.describe(result))
            self.assertEqual(result.report["hits"], nginx.access_log_count())
        log = self.api.log()
        lists = [e for e in log if e["method"] == "GET" and not e.get("watch")]
        watches = [e for e in log if e.get("watch")]
        # One list at start; the old launcher listed every second while a run waited.
        self.assertEqual(len(lists), 1, lists)
        self.assertEqual(len(watches), 1, watches)
        self.assertIn("limit=500", lists[0]["query"])

    def test_200_pods_are_created_in_parallel_faster_than_one_by_one(self):
        self.faulty_api("--delay-ms", 50)
        seconds = {}
        for parallelism in (1, 8):
            cluster = self.cluster(image="localhost/idle:1", extra=[
                "--max-launched-workers", "200", "--kubernetes-api-parallelism",
                str(parallelism)])
            before = len(self.api.log())
            runner = subprocess.Popen(
                [harness.binary("loads-runner"), "--controller", cluster.grpc, "--url",
                 "http://127.0.0.1:1/", "--workers", "200", "-u", "200", "--hits", "1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                created = wait_until(lambda: len(self.api.pods()) == 200, timeout=60)
            finally:
                runner.kill()
                _, runner_stderr = runner.communicate()
            self.assertTrue(created, f"{len(self.api.pods())} pods; {runner_stderr}; "
                                     f"{cluster.stderr()}")
            posts = [e for e in self.api.log()[before:] if e["method"] == "POST"]
            self.assertEqual(len(posts), 200)
            self.assertTrue(all(p["code"] == 201 for p in posts))
            seconds[parallelism] = (max(p["at"] for p in posts) - min(p["at"] for p in posts)
                                    + 50) / 1000
            # The most creates in flight at once, from their start and end times.
            edges = sorted([(p["at"], 1) for p in posts] + [(p["end"], -1) for p in posts])
            in_flight = max(itertools.accumulate(step for _, step in edges))
            self.assertLessEqual(in_flight, parallelism)
            if parallelism > 1:
                self.assertGreater(in_flight, 1)
            code = harness.stop_process(cluster.process, timeout=30)  # deletes its pods
            self.assertTrue(wait_until(lambda: not self.api.pods(), timeout=30),
                            f"{len(self.api.pods())} pods left; exit {code}; {cluster.stderr()}")
            cluster.close()
            self.clusters.remove(cluster)
        print(f"\n200 pods, API answering in 50 ms: one by one {seconds[1]:.2f} s, "
              f"8 at once {seconds[8]:.2f} s", file=sys.stderr)
        self.assertLess(seconds[8], seconds[1] / 3, seconds)

    def test_worker_pods_are_placed_by_the_pod_template(self):
        template = {
            "metadata": {"labels": {"team": "perf"}, "annotations": {"note": "load generator"}},
            "spec": {
                "nodeSelector": {"pool": "load"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "load",
                                 "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "worker"}}}}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "worker"}}}],
                "priorityClassName": "load-testing",
                # OpenShift's restricted SCC assigns its own UID: none is set.
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "worker", "env": [{"name": "TZ", "value": "UTC"}],
                                # After the launcher's own: the worker must accept them, or
                                # the run fails.
                                "args": ["--shutdown-timeout", "7"],
                                "securityContext": {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]},
                                                    "readOnlyRootFilesystem": True}}],
            },
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(template, f)
        try:
            cluster = self.cluster(extra=["--worker-pod-template", f.name])
            self.assert_exact_run(cluster)
        finally:
            os.unlink(f.name)
        posts = self.created()
        self.assertEqual(len(posts), 2)
        for post in posts:
            self.assertEqual((post["code"], post["errors"]), (201, []))
            pod = post["object"]
            self.assertEqual(pod["metadata"]["labels"]["team"], "perf")
            self.assertEqual(pod["metadata"]["labels"]["app.kubernetes.io/component"], "worker")
            self.assertEqual(pod["metadata"]["annotations"]["note"], "load generator")
            self.assertIn("loads/run-id", pod["metadata"]["annotations"])
            spec = pod["spec"]
            for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                        "priorityClassName", "securityContext"):
                self.assertEqual(spec[key], template["spec"][key], key)
            self.assertNotIn("runAsUser", spec["securityContext"])
            (container,) = spec["containers"]
            self.assertEqual(container["env"], [{"name": "TZ", "value": "UTC"}])
            self.assertEqual(container["args"][:2], ["--controller", f"tcp://127.0.0.1:{cluster.zmq_port}"])
            self.assertEqual(container["args"][-2:], ["--shutdown-timeout", "7"])
            self.assertEqual(container["image"], "localhost/loads-worker:test")
            self.assertEqual(spec["restartPolicy"], "Never")

    def test_a_bad_pod_template_is_refused_at_start(self):
        cases = [
            ("{not json", "--worker-pod-template: not JSON"),
            ('["a pod"]', "not a JSON object"),
            ('{"metadata": {"name": "x"}}', "metadata.name: the launcher sets it"),
            ('{"spec": {"restartPolicy": "Always"}}', "spec.restartPolicy: the launcher sets it"),
            ('{"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}',
             "the volume name tmp is the launcher's"),
            ('{"kind": "Deployment"}', "kind: must be Pod"),
            ('{"spec": {"containers": [{"image": "x"}]}}', "every container needs a name"),
            ('{"spec": {"containers": [{"name": "worker", "image": "x"}]}}',
             "spec.containers[worker].image: the launcher sets it"),
            ('{"spec": {"containers": [{"name": "worker", "args": ["--metrics", "0.0.0.0:9465", "--id=w"]}]}}',
             "spec.containers[worker].args: --id is the launcher's"),
            ('{"spec": {"containers": [{"name": "worker", "args": "--metrics"}]}}',
             "spec.containers[worker].args: not an array"),
        ]
        for text, expected in cases:
            with self.subTest(text=text), tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                f.write(text)
                f.flush()
                result = subprocess.run(
                    [harness.binary("loads-controller"), "--launcher", "kubernetes",
                     "--worker-image", "x", "--advertise", "tcp://127.0.0.1:1", "--no-state",
                     "--kubernetes-api", self.api.url, "--worker-pod-template", f.name],
                    capture_output=True, text=True, timeout=20)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(expected, result.stderr)
                self.assertEqual(result.stderr.count("\n"), 1, result.stderr)

    def test_curve_with_launched_pods_and_a_standing_worker(self):
        import zmq
        # As the chart makes it: 40 random alphanumerics are a valid Z85 secret key.
        secret = "".join(random.SystemRandom().choice(string.ascii_letters + string.digits)
                         for _ in range(40))
        public = zmq.curve_public(secret.encode()).decode()
        folder = tempfile.mkdtemp(prefix="loads-curve-")
        self.addCleanup(shutil.rmtree, folder, True)
        with open(f"{folder}/controller.key", "w") as f:
            f.write(f"secret: {secret}\n")
        curve = ["--curve-key-file", f"{folder}/controller.key", "--curve-any-worker",
                 "--curve-public-key-secret", "loads-curve"]
        cluster = self.cluster(extra=curve)
        # The public key is in the Secret for workers to mount, the Secret's other keys kept.
        stored = self.api.secrets()["loads-curve"]
        self.assertEqual(stored, {"note": "made by helm", "public-key": public + "\n"})
        patches = [e for e in self.api.log() if e["method"] == "PATCH"]
        self.assertEqual([p["contentType"] for p in patches], ["application/merge-patch+json"])
        self.assert_exact_run(cluster)
        for post in self.created():
            args = post["object"]["spec"]["containers"][0]["args"]
            self.assertEqual(args[args.index("--curve-server-key") + 1], public)
        # A standing worker with the mounted key (the file as Kubernetes writes it).
        with open(f"{folder}/public-key", "w") as f:
            f.write(stored["public-key"])
        with open(f"{folder}/token", "w") as f:
            f.write(WORKER_TOKEN + "\n")
        worker = subprocess.Popen(
            [harness.binary("loads-worker"), "--controller", f"tcp://127.0.0.1:{cluster.zmq_port}",
             "--id", "standing-1", "--token-file", f"{folder}/token",
             "--curve-server-key-file", f"{folder}/public-key"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addCleanup(harness.stop_process, worker)
        posts_before = len(self.created())
        self.assertTrue(wait_until(lambda: "standing-1" in cluster.run("--ping").stdout,
                                   timeout=15))
        with harness.Nginx() as nginx:
            result = cluster.run("--url", nginx.url, "-u", "1", "--hits", "7", "--workers", "1")
            self.assertEqual(result.code, 0, harness.describe(result))
            self.assertEqual(result.report["run"]["workers"], ["standing-1"])
            self.assertEqual(nginx.access_log_count(), 7)
        self.assertEqual(len(self.created()), posts_before)  # no pod needed
        # A restarted controller finds the key in place and writes nothing.
        cluster.close()
        self.clusters.remove(cluster)
        self.cluster(extra=curve)
        self.assertEqual(len([e for e in self.api.log() if e["method"] == "PATCH"]), 1)

    def test_curve_options_that_cannot_work_are_refused(self):
        folder = tempfile.mkdtemp(prefix="loads-curve-")
        self.addCleanup(shutil.rmtree, folder, True)
        key = subprocess.run([harness.binary("loads-controller"), "keygen", f"{folder}/k"],
                             capture_output=True, text=True)
        self.assertEqual(key.returncode, 0, key.stderr)
        with open(f"{folder}/allow", "w") as f:
            f.write(key.stdout)  # its "public: KEY" line
        base = [harness.binary("loads-controller"), "--launcher", "kubernetes", "--worker-image",
                "x", "--advertise", "tcp://127.0.0.1:1", "--no-state", "--kubernetes-api",
                self.api.url]
        cases = [
            (["--curve-key-file", f"{folder}/k", "--curve-allow", f"{folder}/allow"],
             "add --curve-any-worker", 2),
            (["--curve-public-key-secret", "loads-curve"], "needs --curve-key-file", 2),
        ]
        for extra, expected, code in cases:
            with self.subTest(extra=extra):
                result = subprocess.run(base + extra, capture_output=True, text=True, timeout=20)
                self.assertEqual(result.returncode, code, result.stderr)
                self.assertIn(expected, result.stderr)
        # A Secret that does not exist: the controller stops, saying which.
        sa = tempfile.mkdtemp(prefix="loads-sa-")
        self.addCleanup(shutil.rmtree, sa, True)
        for name, text in (("token", SA_TOKEN), ("namespace", "loadtest")):
            with open(f"{sa}/{name}", "w") as f:
                f.write(text + "\n")
        shutil.copy(f"{self.pki}/ca.crt", f"{sa}/ca.crt")
        result = subprocess.run(
            base + ["--service-account-dir", sa, "--curve-key-file", f"{folder}/k",
                    "--curve-any-worker", "--curve-public-key-secret", "missing"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("the Secret loadtest/missing does not exist", result.stderr)
        # A worker given a secret key as the controller's public one.
        result = subprocess.run(
            [harness.binary("loads-worker"), "--controller", "tcp://127.0.0.1:1",
             "--curve-server-key-file", f"{folder}/k"], capture_output=True, text=True,
            timeout=20)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("holds a secret key", result.stderr)

    def test_bad_launcher_options_are_refused(self):
        controller = harness.binary("loads-controller")
        cases = [
            (["--launcher", "kubernetes", "--worker-image", "x", "--advertise", "tcp://h:1"],
             "KUBERNETES_SERVICE_HOST is not set"),
            (["--launcher", "nomad"], "expected local or kubernetes"),
            (["--worker-cpu", "lots"], "expected a Kubernetes quantity"),
            (["--image-pull-policy", "Sometimes"], "expected IfNotPresent, Always or Never"),
            (["--launcher", "kubernetes", "--worker-image", "x", "--advertise", "tcp://h:1",
              "--token-file", "/etc/hostname"], "needs --worker-token-secret"),
            (["--instance", "-bad-"], "expected a Kubernetes name"),
            (["--launcher", "kubernetes", "--kubernetes-api", "http://127.0.0.1:1",
              "--worker-image", "x", "--service-account-dir", "/nonexistent",
              "--advertise", "tcp://h:1"],
             "must be reached over https"),
            (["--launcher", "kubernetes", "--kubernetes-api", "https://127.0.0.1:1",
              "--worker-image", "x", "--service-account-dir", "/nonexistent",
              "--advertise", "tcp://h:1"],
             "cannot read the service account token /nonexistent/token"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        for args, expected in cases:
            with self.subTest(args=args):
                out = subprocess.run([controller, "--grpc", "127.0.0.1:0", "--zmq",
                                      "tcp://127.0.0.1:*", "--metrics", "127.0.0.1:0",
                                      "--no-state", *args],
                                     capture_output=True, text=True, timeout=10, env=env)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn(expected, out.stderr)


if __name__ == "__main__":
    unittest.main()

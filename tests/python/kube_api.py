"""A stand-in for the part of Kubernetes a gateway uses to host kernel
pods: the API server's pod endpoints (create, read, list, delete, with a
bearer token) and a kubelet that runs each pod's first container as a local
process — its exact command and environment, the downward API's
`status.podIP` filled with a loopback address of the pod's own, its
`emptyDir` mounts made as directories.

Every pod the gateway sends is validated strictly against the Kubernetes
schema before it is accepted, as the real API server would."""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import kubernetes_validate

KUBE = "1.30.0"
POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")


class FakePod:
    def __init__(self, manifest, ip):
        self.manifest = manifest
        self.ip = ip
        self.proc = None
        self.home = None
        self.terminated = None
        self.log = None

    @property
    def name(self):
        return self.manifest["metadata"]["name"]

    def view(self):
        pod = json.loads(json.dumps(self.manifest))
        status = {"phase": "Pending"}
        if self.proc is not None:
            status = {"phase": "Running", "podIP": self.ip,
                      "containerStatuses": [{"name": "kernel", "state": {"running": {}}}]}
        if self.terminated is not None:
            status = {"phase": "Failed" if self.terminated["exitCode"] else "Succeeded", "podIP": self.ip,
                      "containerStatuses": [{"name": "kernel", "state": {"terminated": self.terminated}}]}
        pod["status"] = status
        pod["metadata"].setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_DNS, self.name)))
        return pod


class KubeApi:
    """Serves on 127.0.0.1; `programs` maps the image's paths to local ones."""

    def __init__(self, namespace, token, programs, run_pods=True):
        self.namespace = namespace
        self.token = token
        self.programs = programs
        self.run_pods = run_pods
        self.pods = {}
        self.created = []      # every manifest accepted, in order
        self.invalid = []      # (name, error) of manifests the schema refused
        self.deleted = []
        self.lock = threading.Lock()
        self.ips = (f"127.0.0.{n}" for n in itertools.count(2))
        self.stopping = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, code, body):
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def status(self, code, message):
                self.send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": message, "code": code})

            def route(self, method):
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self.status(401, "Unauthorized")
                url = urlparse(self.path)
                m = POD_PATH.match(url.path)
                if not m:
                    return self.status(404, f"the server could not find {url.path}")
                ns, name = m.groups()
                if ns != api.namespace:
                    return self.status(403, f'pods is forbidden in namespace "{ns}"')
                body = None
                if method == "POST":
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                code, answer = api.handle(method, name, parse_qs(url.query), body)
                if code >= 400:
                    return self.status(code, answer)
                self.send(code, answer)

            def do_GET(self):
                self.route("GET")

            def do_POST(self):
                self.route("POST")

            def do_DELETE(self):
                self.route("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._reap, daemon=True).start()

    def add(self, manifest):
        """A pod that exists without running anything (say, the gateway's own)."""
        with self.lock:
            pod = FakePod(manifest, next(self.ips))
            self.pods[pod.name] = pod
            return pod.view()

    def handle(self, method, name, query, body):
        with self.lock:
            if method == "POST" and name is None:
                return self._create(body)
            if method == "GET" and name is None:
                items = [p.view() for p in self.pods.values() if _selected(p.manifest, query)]
                return 200, {"kind": "PodList", "apiVersion": "v1", "items": items}
            pod = self.pods.get(name)
            if pod is None:
                return 404, f'pods "{name}" not found'
            if method == "GET":
                return 200, pod.view()
            if method == "DELETE":
                self._stop(pod)
                del self.pods[name]
                self.deleted.append(name)
                return 200, pod.view()
        return 405, "method not allowed"

    def _create(self, manifest):
        name = manifest.get("metadata", {}).get("name", "")
        try:
            kubernetes_validate.validate(manifest, KUBE, strict=True)
        except kubernetes_validate.ValidationError as e:
            self.invalid.append((name, str(e)))
            return 422, f"Pod {name!r} is invalid: {e}"
        if name in self.pods:
            return 409, f'pods "{name}" already exists'
        pod = FakePod(manifest, next(self.ips))
        self.created.append(manifest)
        self.pods[name] = pod
        if self.run_pods:
            self._run(pod)
        return 201, pod.view()

    def _run(self, pod):
        spec = pod.manifest["spec"]
        c = spec["containers"][0]
        pod.home = tempfile.mkdtemp(prefix=f"{pod.name}-")
        mounts = {m["mountPath"]: os.path.join(pod.home, m["name"]) for m in c.get("volumeMounts", [])}
        for d in mounts.values():
            os.makedirs(d, exist_ok=True)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        for e in c.get("env", []):
            if "value" in e:
                value = e["value"]
            else:
                field = e["valueFrom"]["fieldRef"]["fieldPath"]
                value = {"status.podIP": pod.ip, "metadata.name": pod.name,
                         "metadata.namespace": self.namespace}[field]
            env[e["name"]] = mounts.get(value, value)
        argv = [self.programs.get(a, a) for a in c.get("command", []) + c.get("args", [])]
        pod.log = open(os.path.join(pod.home, "log"), "w+")
        pod.proc = subprocess.Popen(argv, env=env, cwd=pod.home, stdin=subprocess.DEVNULL,
                                    stdout=pod.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name, reason="OOMKilled"):
        """Ends a pod's process the way the kubelet does when it runs out of memory."""
        with self.lock:
            pod = self.pods[name]
            self._stop(pod)
            pod.terminated = {"exitCode": 137, "reason": reason}

    def _stop(self, pod):
        if pod.proc is not None and pod.proc.poll() is None:
            try:
                os.killpg(pod.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pod.proc.kill()
            pod.proc.wait()

    def _reap(self):
        """Pods whose process ended by itself get the kubelet's terminated status."""
        while not self.stopping:
            with self.lock:
                for pod in self.pods.values():
                    if pod.proc is not None and pod.terminated is None and pod.proc.poll() is not None:
                        said = ""
                        if pod.log is not None:
                            pod.log.seek(0)
                            said = pod.log.read()[-2000:]
                        code = pod.proc.returncode
                        pod.terminated = {"exitCode": code if code >= 0 else 128 - code,
                                          "reason": "Completed" if code == 0 else "Error", "message": said}
            time.sleep(0.1)

    def running(self):
        with self.lock:
            return {n: p for n, p in self.pods.items() if p.terminated is None}

    def close(self):
        self.stopping = True
        with self.lock:
            for pod in self.pods.values():
                self._stop(pod)
                if pod.home:
                    shutil.rmtree(pod.home, ignore_errors=True)
        self.server.shutdown()


def _selected(manifest, query):
    for sel in query.get("labelSelector", []):
        for term in sel.split(","):
            k, _, v = term.partition("=")
            if manifest["metadata"].get("labels", {}).get(k) != v:
                return False
    return True

"""The Helm chart, without a cluster: rendered by Helm's own engine with
each values file under `charts/tarn/ci/`, linted strictly, every manifest
validated strictly against the Kubernetes schemas, and the chart's promises
checked (limits equal the binary's, only the gateway exposed, every pod
non-root with probes and resources, pools within their caps). Then the
rendered pods' exact commands, arguments and environment run as local
processes — service names mapped to loopback ports — and a query goes
through the gateway, so a flag or variable the binary does not know fails
here."""

import base64
import copy
import functools
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
import yaml

from conftest import ROOT, TARN

import helm_python as helm
import kubernetes_validate

CHART = ROOT / "charts" / "tarn"
VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE = "1.30.0"
NS = "tarn-ns"
# Custom resources the Kubernetes schemas do not cover, with the fields
# their operators require.
CUSTOM = {
    "ScaledObject": ["spec.scaleTargetRef.name", "spec.minReplicaCount", "spec.maxReplicaCount", "spec.triggers"],
    "ServiceMonitor": ["spec.selector", "spec.endpoints"],
    "PodMonitor": ["spec.selector", "spec.podMetricsEndpoints"],
    "HTTPRoute": ["spec.parentRefs", "spec.rules"],
    "GRPCRoute": ["spec.parentRefs", "spec.rules"],
}


def render(values, name="r"):
    """The chart's manifests for `values` (fresh objects: callers may edit them)."""
    return copy.deepcopy(_render(json.dumps(values, sort_keys=True), name))


@functools.lru_cache(maxsize=None)
def _render(values_json, name):
    out = helm.Chart.load(str(CHART)).render(json.loads(values_json), name=name, namespace=NS, is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def load_values(path):
    return yaml.safe_load(path.read_text()) or {}


def get(doc, dotted):
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def pod_specs(docs):
    """(workload name, pod spec) of every Deployment, StatefulSet and Job."""
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"], d)
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def config_of(docs):
    cm = next(d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config"))
    return tomllib.loads(cm["data"]["tarn.toml"])


def test_the_chart_lints_strictly():
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBE}")
    assert not report["errors"], report


@pytest.mark.parametrize("values_file", VALUES, ids=[v.stem for v in VALUES])
def test_every_manifest_validates_strictly(values_file):
    docs = render(load_values(values_file))
    assert docs
    seen = set()
    for d in docs:
        seen.add(d["kind"])
        if d["kind"] in CUSTOM:
            missing = [f for f in CUSTOM[d["kind"]] if get(d, f) in (None, [], {})]
            assert not missing, (d["kind"], d["metadata"]["name"], missing)
            continue
        try:
            kubernetes_validate.validate(d, KUBE, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{d['kind']} {d['metadata']['name']}: {e}") from e
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} <= seen, seen
    # The kernel pod template the gateway fills in is a valid Pod as it is.
    for template in kernel_pod_templates(docs):
        try:
            kubernetes_validate.validate(template, KUBE, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"the kernel pod template: {e}") from e


def kernel_pod_templates(docs):
    return [json.loads(d["data"]["pod.json"]) for d in kinds(docs, "ConfigMap")
            if d["metadata"]["name"].endswith("-kernel-pod")]


def test_validation_catches_a_wrong_field():
    """Control: the strict validation is not a formality."""
    d = next(x for x in render({}) if x["kind"] == "Deployment")
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, KUBE, strict=True)


def test_the_limits_default_to_the_binarys_defaults():
    """Every key the chart's configuration file sets by default has the
    value the example configuration gives, which a Rust test keeps equal
    to the binary's defaults."""
    example = tomllib.loads((ROOT / "config" / "tarn.example.toml").read_text())
    chart = config_of(render({}))
    checked = 0
    for section, table in chart.items():
        for key, value in table.items():
            assert key in example[section], f"[{section}] {key} is not a key the binary knows"
            assert value == example[section][key], (section, key, value, example[section][key])
            checked += 1
    assert checked >= 20, chart


@pytest.mark.parametrize("values_file", VALUES, ids=[v.stem for v in VALUES])
def test_only_the_gateway_is_exposed(values_file):
    docs = render(load_values(values_file))
    full = "r-tarn"
    for s in kinds(docs, "Service"):
        if s["metadata"]["name"] == f"{full}-gateway":
            continue
        assert s["spec"].get("type", "ClusterIP") == "ClusterIP" and s["spec"].get("clusterIP") == "None", s
    for ing in kinds(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                assert p["backend"]["service"]["name"] == f"{full}-gateway", ing
    for route in kinds(docs, "HTTPRoute") + kinds(docs, "GRPCRoute"):
        for rule in route["spec"]["rules"]:
            assert all(b["name"] == f"{full}-gateway" for b in rule["backendRefs"]), route
    for d in kinds(docs, "Deployment") + kinds(docs, "StatefulSet"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert not any("hostPort" in p for p in c.get("ports", [])), d["metadata"]["name"]
    # Behind the door, NetworkPolicies admit only the release's own pods
    # (and, for metrics, the configured scrapers); etcd only coordinators.
    policies = {p["metadata"]["name"]: p for p in kinds(docs, "NetworkPolicy")}
    assert {f"{full}-coordinator", f"{full}-executors"} <= set(policies), policies.keys()
    # A kernel pod runs its user's code: no policy's peers include it but
    # its own, which lets in only gateways and lets it reach only their
    # Flight SQL port (and what the operator added).
    for template in kernel_pod_templates(docs):
        labels = template["metadata"]["labels"]
        for name, p in policies.items():
            for rule in p["spec"]["ingress"]:
                for peer in rule["from"]:
                    want = peer.get("podSelector", {}).get("matchLabels")
                    assert not want or not want.items() <= labels.items(), (name, peer)
        own = policies[f"{full}-python-kernels"]
        assert own["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        assert own["spec"]["policyTypes"] == ["Ingress", "Egress"]
        gateway = {"app.kubernetes.io/name": "tarn", "app.kubernetes.io/instance": "r",
                   "app.kubernetes.io/component": "gateway"}
        first, *extra = own["spec"]["egress"]
        assert first["to"] == [{"podSelector": {"matchLabels": gateway}}], first
        assert extra == (load_values(values_file).get("pythonKernels", {}).get("extraEgress") or []), extra
        assert [x["port"] for x in first["ports"]] == [50060], first
    for name, p in policies.items():
        for rule in p["spec"]["ingress"]:
            for peer in rule["from"]:
                if "podSelector" in peer:
                    labels = peer["podSelector"]["matchLabels"]
                    assert labels["app.kubernetes.io/instance"] == "r", (name, peer)
                    if name.endswith("-etcd"):
                        assert labels.get("app.kubernetes.io/component") in ("coordinator", "etcd"), peer
                else:
                    assert [x["port"] for x in rule["ports"]] == ["metrics"], (name, rule)


@pytest.mark.parametrize("values_file", VALUES, ids=[v.stem for v in VALUES])
def test_every_pod_is_unprivileged_probed_and_sized(values_file):
    docs = render(load_values(values_file))
    kernels = load_values(values_file).get("pythonKernels", {}).get("enabled", False)
    for name, spec, owner in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        # Only a gateway hosting Python kernels holds a token: it makes
        # their pods, and its Role allows nothing else.
        holds_token = spec.get("automountServiceAccountToken") is not False
        assert holds_token == (kernels and name.endswith("-gateway")), name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            if owner["kind"] != "Job":
                assert "livenessProbe" in c and "readinessProbe" in c, name
        # Each role reads only its own cluster credentials; only gateways
        # hold the token key.
        for v in spec.get("volumes", []):
            if v["name"] == "cluster":
                files = {i["path"] for i in v["secret"]["items"]}
                role = c["args"][0]
                assert files <= {"ca.pem", f"{role}.pem", f"{role}.key", "reservation.key"}, (name, files)
                assert ("reservation.key" in files) == (role != "gateway"), (name, files)
            if v["name"] == "auth":
                assert c["args"][0] == "gateway", name
    roles = kinds(docs, "Role")
    assert [r["rules"] for r in roles] == ([[{"apiGroups": [""], "resources": ["pods"],
                                              "verbs": ["create", "get", "list", "delete"]}]] if kernels else [])
    for template in kernel_pod_templates(docs):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
        (c,) = spec["containers"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["command"][1:] == ["-m", "tarn_provider.pod"]


@pytest.mark.parametrize("values_file", VALUES, ids=[v.stem for v in VALUES])
def test_the_pools_fit_their_caps_and_resources_follow_vcores(values_file):
    values = load_values(values_file)
    docs = render(values)
    caps = config_of(docs)["coordinator"]
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in kinds(docs, "ScaledObject") + kinds(docs, "HorizontalPodAutoscaler")}
    for d in kinds(docs, "Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c["args"][0] != "executor":
            continue
        pool = c["args"][c["args"].index("--pool") + 1]
        vcores = int(c["args"][c["args"].index("--vcores") + 1])
        if d["metadata"]["name"] in scaled:
            s = scaled[d["metadata"]["name"]]
            n = s["spec"].get("maxReplicaCount") or s["spec"].get("maxReplicas")
        else:
            n = d["spec"]["replicas"]
        assert n * vcores <= caps[f"{pool}_pool_vcores"], (pool, n, vcores)
        assert float(c["resources"]["limits"]["cpu"]) == vcores  # one CPU per vCore by default
        assert c["resources"]["limits"]["memory"] == f"{vcores * 4096}Mi"
    # A pool that would offer more than its cap is refused with the reason.
    with pytest.raises(Exception) as e:
        render({**values, "executors": {"interactive": {"replicas": 2, "vcores": 400}}})
    assert "more than its cap of 760" in str(e.value), e.value


# ---------------------------------------------------------------------------
# Running the rendered chart.

LOCAL_VALUES = {
    "coordinator": {"replicas": 2},
    "executors": {"interactive": {"replicas": 1, "vcores": 2}, "job": {"replicas": 1, "vcores": 2}},
    "gateway": {"replicas": 1},
    "lake": {"demo": True},
}
# What the image's entrypoint and the etcd image's command are here.
PROGRAMS = {None: str(TARN), "etcd": shutil.which("etcd") or "/usr/bin/etcd"}


_taken = set()


def listen_port():
    """A free loopback port below the ephemeral range, so no outgoing
    connection (a dozen processes make many) takes it before its process
    binds it."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _taken:
            continue
        try:
            for host in ("127.0.0.1", "127.0.0.2"):  # executors bind both
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        _taken.add(port)
        return port
    raise AssertionError("no free port below the ephemeral range")


class Pod:
    def __init__(self, name, spec, claims, base):
        self.name, self.spec = name, spec
        self.container = spec["containers"][0]
        self.ports = {}  # container port -> local port
        for p in self.container.get("ports", []):
            self.ports[p["containerPort"]] = listen_port()
        self.dir = base / name
        self.dir.mkdir(parents=True)
        self.claims = claims  # volume claim templates (StatefulSet)


def materialise(pod, docs, lake_dir):
    """Local folders for the pod's volumes; returns {mount path: folder}."""
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
    mounts = {}
    for m in pod.container.get("volumeMounts", []):
        v = volumes.get(m["name"])
        local = pod.dir / m["name"]
        if v is None:  # a volume claim template: the pod's own disk
            assert m["name"] in pod.claims, m
            local.mkdir()
        elif "persistentVolumeClaim" in v:
            local = lake_dir
        elif "emptyDir" in v:
            local.mkdir()
        elif "configMap" in v:
            local.mkdir()
            for k, text in by_name[("ConfigMap", v["configMap"]["name"])]["data"].items():
                (local / k).write_text(text)
        elif "secret" in v:
            local.mkdir()
            secret = by_name[("Secret", v["secret"]["secretName"])]
            data = dict(secret.get("stringData", {}))
            data.update({k: base64.b64decode(x).decode() for k, x in secret.get("data", {}).items()})
            for item in v["secret"]["items"]:
                (local / item["path"]).write_text(data[item["key"]])
                os.chmod(local / item["path"], 0o400)
        else:
            raise AssertionError(f"volume kind not run locally: {v}")
        mounts[m["mountPath"]] = local
    return mounts


def command_of(pod, pods, docs, mounts):
    """The container's command and environment with cluster names mapped
    to loopback ports and mounted paths to local folders."""
    c = pod.container
    secrets = {d["metadata"]["name"]: d for d in kinds(docs, "Secret")}
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            field = e["valueFrom"]["fieldRef"]["fieldPath"]
            env[e["name"]] = {"metadata.name": pod.name, "status.podIP": "127.0.0.1"}[field]
    for src in c.get("envFrom", []):
        env.update(secrets[src["secretRef"]["name"]].get("stringData", {}))

    def host_port(m):
        other = pods[m.group(1)]
        return f"127.0.0.1:{other.ports[int(m.group(2))]}"

    names = "|".join(re.escape(n) for n in pods)
    cluster_name = re.compile(rf"({names})\.[a-z0-9-]+\.{NS}\.svc(?:\.cluster\.local)?:(\d+)")

    def local(text):
        text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], text)
        text = cluster_name.sub(host_port, text)
        text = re.sub(r"0\.0\.0\.0:(\d+)", lambda m: f"127.0.0.1:{pod.ports[int(m.group(1))]}", text)
        if mounts:  # one pass: a replaced path is not replaced again
            paths = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
            text = re.sub(rf"(?<![\w/])({paths})(?=/|$|\")", lambda m: str(mounts[m.group(1)]), text)
        return text

    env = {k: local(v) for k, v in env.items()}
    for k, v in env.items():
        if k.endswith("_PORT") and v.isdigit() and int(v) in pod.ports:
            env[k] = str(pod.ports[int(v)])
    program = PROGRAMS[(c.get("command") or [None])[0]]
    argv = [program] + [local(a) for a in c.get("args", [])]
    return argv, {**os.environ, **env}


def pods_of(docs, base):
    pods = {}
    for d in kinds(docs, "StatefulSet") + kinds(docs, "Deployment"):
        claims = [t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])]
        for i in range(d["spec"].get("replicas", 1)):
            name = f"{d['metadata']['name']}-{i}"
            pods[name] = Pod(name, d["spec"]["template"]["spec"], claims, base)
    return pods


def ready(http_port):
    """The gateway's /readyz answer (raises while it is not ready)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
        return json.loads(r.read())


def wait_http(url, limit, procs):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for name, p in procs.items():
            assert p.poll() is None, f"{name} exited with {p.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {limit}s")


def test_the_rendered_chart_runs_as_a_cluster_and_answers_through_the_gateway():
    docs = render(LOCAL_VALUES)
    base = pathlib.Path(tempfile.mkdtemp(prefix="tarn-chart-"))
    lake_dir = base / "lake"
    lake_dir.mkdir()
    pods = pods_of(docs, base)
    logs, procs = {}, {}
    try:
        # The install's Job first: the demo lake.
        for job in kinds(docs, "Job"):
            pod = Pod(job["metadata"]["name"], job["spec"]["template"]["spec"], [], base)
            argv, env = command_of(pod, {**pods, pod.name: pod}, docs, materialise(pod, docs, lake_dir))
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, (argv, r.stderr[-3000:])
        for name, pod in pods.items():
            argv, env = command_of(pod, pods, docs, materialise(pod, docs, lake_dir))
            logs[name] = open(base / f"{name}.log", "wb")
            procs[name] = subprocess.Popen(argv, env=env, stdout=logs[name], stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        gateway = pods["r-tarn-gateway-0"]
        http_port, flight_port = gateway.ports[8060], gateway.ports[50060]
        wait_http(f"http://127.0.0.1:{http_port}/readyz", 120, procs)
        # A token signed with the key the chart made for the gateways.
        key = base / "r-tarn-gateway-0" / "auth" / "token.key"
        token = subprocess.run([str(TARN), "token", "--key-file", str(key), "--user", "chart",
                                "--role", "demo=reader"], capture_output=True, text=True, check=True).stdout.strip()
        with flight_sql.connect(f"grpc://127.0.0.1:{flight_port}", db_kwargs={
                "adbc.flight.sql.authorization_header": f"Bearer {token}"}, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM demo.SigninLogs WHERE ResultType <> '0'")
                assert cur.fetchone()[0] > 0
            # Control: without a token the gateway refuses (auth.mode token).
        with flight_sql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True) as conn:
            with pytest.raises(Exception) as e, conn.cursor() as cur:
                cur.execute("SELECT 1")
            assert "TARN-2201" in str(e.value), e.value
        # The chart's coordinators fail over: the leader killed, the other
        # (elected over the chart's etcd) leads, and queries go on.
        leader = ready(http_port)["coordinator"]
        killed = next(n for n, pod in pods.items() if n.startswith("r-tarn-coordinator-")
                      and f"127.0.0.1:{pod.ports[50050]}" == leader)
        os.killpg(procs[killed].pid, signal.SIGKILL)
        procs.pop(killed).wait()
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, "no coordinator took over"
            try:
                r = ready(http_port)
                if r["coordinator"] != leader:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while True:  # the executors re-register with the new leader
            try:
                with flight_sql.connect(f"grpc://127.0.0.1:{flight_port}", db_kwargs={
                        "adbc.flight.sql.authorization_header": f"Bearer {token}"}, autocommit=True) as conn:
                    with conn.cursor() as cur:
                        cur.execute("SELECT count(*) FROM demo.SigninLogs")
                        assert cur.fetchone()[0] > 0
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for f in logs.values():
            f.close()
        failed = any(p.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL) for p in procs.values())
        if not failed:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("values, says", [
    ({"executor": {"interactive": {"vcores": 4}}}, "executor"),          # a misspelt key
    ({"auth": {"mode": "open"}}, "mode"),                                 # not a mode
    ({"executors": {"interactive": {"vcores": 0}}}, "vcores"),            # no vCores
    ({"lake": {"url": "ftp://lake"}}, "url"),                             # not a lake URL
    ({"config": {"gateway": {"query_timeout": "two hours"}}}, "query_timeout"),
])
def test_values_the_schema_refuses(values, says):
    with pytest.raises(Exception) as e:
        render(values)
    assert says in str(e.value), e.value

"""`tarn-python` kernels as pods (`python_kernel_launcher = "kubernetes"`),
without a cluster: the gateway makes each kernel's pod from the template
the Helm chart renders, through a stand-in for the API server whose
kubelet runs the pod's exact command and environment as a local process
(`kube_api.py`). What is real: the gateway, the chart's template (validated
strictly as the API server would), the pod's entry point, ipykernel, the
ZeroMQ channels over TCP, and the kernel's lake calls back to the
gateway."""

import json
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import KERNEL_PYTHON, running
from jupyter_client_util import Kernel, http
from kube_api import KubeApi
from test_chart import NS, render
from test_python_kernel import run, start

OWNER = "r-tarn-gateway-5d8f9c-x7k2p"
OWNER_UID = "3f1d2c4b-0000-4000-8000-00000000a11c"
TOKEN = "service-account-token-for-the-gateway"
LEFT_OVER = "r-tarn-kernel-0123456789ab"


def kernel_pod_template():
    docs = render({"pythonKernels": {"enabled": True}})
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "r-tarn-kernel-pod")
    return json.loads(cm["data"]["pod.json"])


def gateway_env(tmp, api, token=TOKEN):
    template = kernel_pod_template()
    (tmp / "pod.json").write_text(json.dumps(template))
    (tmp / "token").write_text(token)
    return {
        "TARN_GATEWAY__PYTHON_KERNEL_LAUNCHER": "kubernetes",
        "TARN_GATEWAY__PYTHON_KERNEL_POD_TEMPLATE": str(tmp / "pod.json"),
        "TARN_GATEWAY__PYTHON_KERNEL_POD_NAMESPACE": NS,
        "TARN_GATEWAY__PYTHON_KERNEL_POD_OWNER": OWNER,
        "TARN_GATEWAY__PYTHON_KERNEL_LAKE_URI": "grpc://127.0.0.1:{flight}",
        "TARN_GATEWAY__KUBERNETES_API": api.url,
        "TARN_GATEWAY__KUBERNETES_TOKEN_FILE": str(tmp / "token"),
        "TARN_GATEWAY__KUBERNETES_CA_FILE": "",
        # Renewed every second: a kernel outliving several lifetimes shows
        # its credential is kept alive, not just long.
        "TARN_GATEWAY__PYTHON_KERNEL_CREDENTIAL_LIFETIME": "3s",
    }


def stand_in():
    template = kernel_pod_template()
    python = template["spec"]["containers"][0]["command"][0]
    api = KubeApi(NS, TOKEN, {python: str(KERNEL_PYTHON)})
    api.add({"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": OWNER, "namespace": NS, "uid": OWNER_UID}})
    # A kernel pod an earlier run of this gateway left behind.
    api.add({"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": LEFT_OVER, "namespace": NS, "labels": {"tarn.io/kernel-of": OWNER}}})
    return api


@pytest.fixture(scope="module")
def pods(lake, tmp_path_factory):
    api = stand_in()
    gen = running(lake, env=gateway_env(tmp_path_factory.mktemp("kube"), api))
    info = next(gen)
    yield info, api
    for _ in gen:
        pass
    api.close()


def wait_for(what, timeout=60):
    deadline = time.time() + timeout
    while True:
        got = what()
        if got or time.time() > deadline:
            return got
        time.sleep(0.1)


def pod_of(api, ws):
    _, ip, _ = run(ws, "import os; os.environ['TARN_KERNEL_IP']")
    ip = ip.strip("'")
    return next(n for n, p in api.running().items() if p.ip == ip)


def test_a_kernel_is_a_pod_made_from_the_charts_template(pods):
    tarn, api = pods
    assert wait_for(lambda: LEFT_OVER in api.deleted), "the pod an earlier run left was not deleted"
    assert wait_for(lambda: api.created), "the pool made no pod"
    k = start(tarn)
    ws = Kernel(tarn["http"], k["id"])
    try:
        reply, r, msgs = run(ws, "1 + 1")
        assert reply["status"] == "ok" and r == "2", msgs
        name = pod_of(api, ws)
        manifest = next(m for m in api.created if m["metadata"]["name"] == name)
        # Every pod the gateway sent passed the schema strictly, and is the
        # chart's template with its own owner, uid and connection.
        assert not api.invalid, api.invalid
        assert manifest["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Pod", "name": OWNER, "uid": OWNER_UID}]
        assert manifest["metadata"]["labels"]["tarn.io/kernel-of"] == OWNER
        assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == "tarn-kernel"
        spec = manifest["spec"]
        assert spec["securityContext"]["runAsUser"] >= 2_000_000 and spec["securityContext"]["runAsNonRoot"]
        assert spec["automountServiceAccountToken"] is False
        c = spec["containers"][0]
        assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        uids = {m["spec"]["securityContext"]["runAsUser"] for m in api.created}
        assert len(uids) == len(api.created), "kernel pods share a uid (and so a process limit)"

        # Its lake calls go back to this gateway as its user, and keep
        # working after several credential lifetimes.
        with flight_sql.connect(tarn["uri"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM SigninLogs WHERE ResultType <> '0'")
            expected = cur.fetchone()[0]
        query = "int(lake.sql(\"SELECT COUNT(*) AS n FROM SigninLogs WHERE ResultType <> '0'\").to_pandas()['n'][0])"
        _, r, msgs = run(ws, query)
        assert r == str(expected), msgs
        time.sleep(7)
        _, r, msgs = run(ws, query)
        assert r == str(expected), msgs
        _, credential, _ = run(ws, "lake._credential")
        credential = credential.strip("'")
        assert credential.startswith("Bearer tarnk."), credential
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")
    # Shut down, its pod is deleted and its credential is refused.
    assert wait_for(lambda: name in api.deleted, 15), (name, api.deleted)
    with pytest.raises(Exception) as refused:
        with flight_sql.connect(tarn["uri"], db_kwargs={"adbc.flight.sql.authorization_header": credential}) as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    assert "2204" in str(refused.value), refused.value


def test_a_kernel_pod_that_runs_out_of_memory_is_reported_dead_with_why(pods):
    tarn, api = pods
    k = start(tarn, vcores=2)
    ws = Kernel(tarn["http"], k["id"])
    try:
        name = pod_of(api, ws)
        api.kill(name, "OOMKilled")
        seen = []
        try:
            while not any(m["msg_type"] == "status" and m["content"]["execution_state"] == "dead" for m in seen):
                seen.append(ws.recv(timeout=30))
        except Exception:
            pass
        said = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
        assert "TARN-2319" in said and "OOMKilled" in said and name in said, said
    finally:
        ws.close()
    status, body, _ = http("GET", f"{tarn['http']}/api/kernels/{k['id']}")
    assert status == 404, body

    def released():
        _, leases, _ = http("GET", f"{tarn['http']}/v1/leases")
        return not any(l["lease_id"] == k["tarn"]["lease_id"] for l in leases["leases"])
    assert wait_for(released, 15), "its lease was not returned"
    # The gateway also deleted what was left of the pod.
    assert wait_for(lambda: name in api.deleted, 15), api.deleted


def test_a_gateway_the_api_refuses_offers_no_python_kernels_and_says_why(lake, tmp_path):
    api = stand_in()
    try:
        gen = running(lake, env=gateway_env(tmp_path, api, token="a-token-the-api-does-not-know"))
        tarn = next(gen)
        try:
            status, specs, _ = http("GET", f"{tarn['http']}/api/kernelspecs")
            assert status == 200 and set(specs["kernelspecs"]) == {"tarn-sql", "tarn-kql"}, specs
            status, body, _ = http("POST", f"{tarn['http']}/api/kernels", {"name": "tarn-python"})
            assert status == 503 and body["error"]["code"] == 2320, body
            log = open(tarn["log"], errors="replace").read()
            assert "tarn-python kernels are not offered" in log and "HTTP 401: Unauthorized" in log, log[-3000:]
        finally:
            for _ in gen:
                pass
        assert not api.created
    finally:
        api.close()

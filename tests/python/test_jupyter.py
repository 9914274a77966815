"""Tarn as a Jupyter kernel gateway: a real `jupyter server --gateway-url`,
and the kernels API and websocket driven directly."""

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import uuid

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import free_port, mint
from jupyter_client_util import Kernel, http, of_type

NARROW = "SELECT TimeGenerated, UserPrincipalName, ResultType, IPAddress FROM SigninLogs"


def signin_count(tarn):
    with flight_sql.connect(tarn["uri"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM SigninLogs")
        return cur.fetchone()[0]


def start_kernel(tarn, token=None, env=None):
    status, k, _ = http("POST", f"{tarn['http']}/api/kernels", {"name": "tarn-sql", "env": env or {}}, token)
    assert status == 201, k
    return k


@pytest.fixture
def notebook_server(tarn):
    """`jupyter server` delegating every kernel to Tarn, authenticated to
    Tarn with a token for user `alice` (sent as `Authorization: token …`)."""
    port = free_port()
    jtoken = uuid.uuid4().hex
    root = tempfile.mkdtemp(prefix="tarn-nb-")
    log = tempfile.NamedTemporaryFile(prefix="jupyter-", suffix=".log", delete=False)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=root, JUPYTER_DATA_DIR=root, JUPYTER_RUNTIME_DIR=root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
         f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
         f"--IdentityProvider.token={jtoken}",
         f"--gateway-url={tarn['http']}", f"--GatewayClient.auth_token={mint(tarn, 'alice')}",
         "--GatewayClient.request_timeout=60"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            status, _, _ = http("GET", f"{base}/api/status", token=jtoken, scheme="token")
            if status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("jupyter server did not start:\n" + open(log.name).read()[-3000:])
        time.sleep(0.2)
    yield {"http": base, "token": jtoken, "log": log.name}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_real_notebook_server_runs_a_sql_cell_through_tarn(tarn, notebook_server):
    nb = notebook_server
    status, specs, _ = http("GET", f"{nb['http']}/api/kernelspecs", token=nb["token"], scheme="token")
    assert status == 200, specs
    assert "tarn-sql" in specs["kernelspecs"], specs
    status, k, _ = http("POST", f"{nb['http']}/api/kernels", {"name": "tarn-sql"}, nb["token"], "token")
    assert status == 201, (k, open(nb["log"]).read()[-2000:])
    # The kernel is Tarn's, opened with alice's token.
    status, mine, _ = http("GET", f"{tarn['http']}/api/kernels/{k['id']}", token=mint(tarn, "alice"))
    assert status == 200 and mine["tarn"]["user"] == "alice", mine

    ws = websocket_via_server(nb, k["id"])
    try:
        reply, msgs = ws.execute(NARROW)
        assert reply["status"] == "ok", reply
        result = of_type(msgs, "execute_result")[0]["content"]
    finally:
        ws.close()
    n = signin_count(tarn)
    assert n > 10_000
    assert f"showing 10,000 of {n:,} rows" in result["data"]["text/plain"]
    assert result["data"]["text/html"].count("<tr>") == 10_000 + 1
    assert result["metadata"]["tarn"] == {"rows_shown": 10_000, "rows_total": n, "truncated": True}
    assert reply["execution_count"] == 1

    status, _, _ = http("DELETE", f"{nb['http']}/api/kernels/{k['id']}", token=nb["token"], scheme="token")
    assert status == 204
    status, gone, _ = http("GET", f"{tarn['http']}/api/kernels/{k['id']}", token=mint(tarn, "alice"))
    assert status == 404 and gone["error"]["code"] == 2308, gone


def websocket_via_server(nb, kernel_id):
    import websocket

    url = nb["http"].replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels?token={nb['token']}"
    k = Kernel.__new__(Kernel)
    k.ws = websocket.create_connection(url, timeout=60)
    k.session = uuid.uuid4().hex
    return k


def test_kernel_lifecycle_and_messages(tarn):
    status, specs, _ = http("GET", f"{tarn['http']}/api/kernelspecs")
    assert specs["default"] == "tarn-sql"
    spec = specs["kernelspecs"]["tarn-sql"]
    assert spec["spec"]["language"] == "sql" and spec["resources"] == {}
    k = start_kernel(tarn)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", k["last_activity"]), k
    assert k["execution_state"] == "idle" and k["connections"] == 0
    ws = Kernel(tarn["http"], k["id"])
    try:
        mid = ws.send("kernel_info_request", {})
        info = ws.until("kernel_info_reply", mid)[-1]["content"]
        assert info["protocol_version"] == "5.3" and info["language_info"]["name"] == "sql"
        _, listed, _ = http("GET", f"{tarn['http']}/api/kernels/{k['id']}")
        assert listed["connections"] == 1

        # Several statements in one cell: each result is shown, the last
        # as the cell's result; progress is a display updated in place.
        reply, msgs = ws.execute("SELECT COUNT(*) AS n FROM SigninLogs;\nSELECT 1 + 1 AS two")
        assert reply["status"] == "ok"
        types = [m["header"]["msg_type"] for m in msgs]
        assert types[0] == "status" and msgs[0]["content"]["execution_state"] == "busy"
        assert "execute_input" in types
        first = [m for m in of_type(msgs, "display_data") if "text/html" in m["content"]["data"]]
        assert first and first[0]["content"]["data"]["application/vnd.dataresource+json"]["data"] == [
            {"n": signin_count(tarn)}]
        last = of_type(msgs, "execute_result")[0]["content"]
        assert last["data"]["application/vnd.dataresource+json"]["data"] == [{"two": 2}]
        assert "1 row" in last["data"]["text/plain"]
        progress = of_type(msgs, "update_display_data")
        assert progress and progress[-1]["content"]["data"]["text/plain"].startswith("Done in")
        assert "transient" in progress[-1]["content"]

        # An error: Jupyter's error message and reply, with the code.
        reply, msgs = ws.execute("SELECT * FROM NoSuchTable")
        assert reply["status"] == "error" and reply["ename"] == "TARN-2100 TABLE_NOT_FOUND", reply
        assert of_type(msgs, "error")[0]["content"]["evalue"] == reply["evalue"]
        assert reply["execution_count"] == 2

        # Completion: tables of the workspace, then columns of a table.
        mid = ws.send("complete_request", {"code": "SELECT * FROM Sig", "cursor_pos": 17})
        c = ws.until("complete_reply", mid)[-1]["content"]
        assert c["matches"] == ["SigninLogs"] and (c["cursor_start"], c["cursor_end"]) == (14, 17)
        mid = ws.send("complete_request", {"code": "SELECT SigninLogs.UserP", "cursor_pos": 23})
        assert ws.until("complete_reply", mid)[-1]["content"]["matches"] == ["UserPrincipalName"]
    finally:
        ws.close()
    status, _, _ = http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")
    assert status == 204


def test_bad_input_gets_an_answer_and_the_kernel_lives_on(tarn):
    k = start_kernel(tarn)
    ws = Kernel(tarn["http"], k["id"])
    try:
        ws.ws.send("this is not json")
        err = ws.until("error")[-1]["content"]
        assert err["ename"] == "TARN-2805 INVALID_ARGUMENT"

        mid = ws.send("frobnicate_request", {})
        reply = ws.until("frobnicate_reply", mid)[-1]["content"]
        assert reply["ename"] == "TARN-2803 UNSUPPORTED" and "frobnicate_request" in reply["evalue"]

        # A second websocket on the same kernel is refused with a reason.
        second = Kernel(tarn["http"], k["id"])
        code, reason = second.close_status()
        assert code == 4409 and "KERNEL_ALREADY_CONNECTED" in reason, (code, reason)

        # The first still works.
        reply, _ = ws.execute("SELECT 42 AS answer")
        assert reply["status"] == "ok"

        # "Run all": cells run in the order sent; after a failing cell the
        # ones queued behind it are aborted, as Jupyter expects.
        ids = [ws.send("execute_request", {"code": code}) for code in
               ("SELECT 1 AS a", "SELECT * FROM Nope", "SELECT 3 AS c", "SELECT 4 AS d")]
        replies = {}
        while len(replies) < 4:
            m = ws.recv(60)
            if m["header"]["msg_type"] == "execute_reply":
                replies[m["parent_header"]["msg_id"]] = m["content"]["status"]
        assert [replies[i] for i in ids] == ["ok", "error", "aborted", "aborted"], replies
        reply, _ = ws.execute("SELECT 5 AS e")
        assert reply["status"] == "ok"
    finally:
        ws.close()

    status, body, _ = http("GET", f"{tarn['http']}/api/kernels/00000000-0000-0000-0000-000000000000")
    assert status == 404 and body["error"]["code"] == 2308
    status, body, _ = http("POST", f"{tarn['http']}/api/kernels", {"name": "python3"})
    assert status == 400 and "tarn-sql" in body["error"]["message"]
    req_status, body, _ = http("POST", f"{tarn['http']}/api/kernels/{k['id']}/interrupt")
    assert req_status == 204
    assert http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")[0] == 204


def test_interrupt_stops_a_long_cell(tarn):
    k = start_kernel(tarn)
    ws = Kernel(tarn["http"], k["id"])
    try:
        mid = ws.send("execute_request", {
            "code": "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0"})
        # Wait until it is running on the executors (progress shows up).
        ws.until("update_display_data", mid, timeout=60)
        t0 = time.time()
        assert http("POST", f"{tarn['http']}/api/kernels/{k['id']}/interrupt")[0] == 204
        reply = ws.until("execute_reply", mid, timeout=30)[-1]["content"]
        took = time.time() - t0
        assert reply["status"] == "error" and reply["ename"] == "TARN-2804 CANCELLED", reply
        # The cross join runs for minutes; ending at all shows the cancel
        # reached the executors. How fast is a benchmark's question
        # (bench/interrupt.py), not a test's.
        assert took < 20, f"interrupt took {took:.2f}s"
        reply, _ = ws.execute("SELECT 1 AS still_alive")
        assert reply["status"] == "ok"
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")


def test_a_gateway_shutting_down_tells_its_notebooks_why(lake):
    """Told to stop, the gateway ends its kernels before it goes: the
    notebook reads why (TARN-2321) and the websocket closes with 1012,
    "service restart", so a client knows to reconnect rather than that its
    kernel failed."""
    import json
    import signal

    import websocket
    from conftest import start
    proc, info = start(lake, last=True)
    try:
        status, k, _ = http("POST", f"{info['http']}/api/kernels", {"name": "tarn-sql"})
        assert status == 201, k
        ws = Kernel(info["http"], k["id"])
        ws.send("kernel_info_request", {})
        ws.until("kernel_info_reply")
        proc.send_signal(signal.SIGTERM)
        texts, code, reason = [], None, ""
        ws.ws.settimeout(20)
        while True:
            op, data = ws.ws.recv_data(control_frame=True)
            if op == websocket.ABNF.OPCODE_TEXT:
                m = json.loads(data)
                if m["msg_type"] == "stream":
                    texts.append(m["content"]["text"])
            elif op == websocket.ABNF.OPCODE_CLOSE:
                code, reason = int.from_bytes(data[:2], "big"), data[2:].decode()
                break
        assert code == 1012 and "TARN-2321" in reason, (code, reason)
        assert any("TARN-2321 GATEWAY_SHUTTING_DOWN" in t for t in texts), texts
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

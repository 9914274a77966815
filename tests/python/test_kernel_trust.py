"""The trust boundary of kernels and the HTTP port, attacked from outside:
each kernel message acts with the credential that sent it, completions
follow the caller's roles, and the HTTP API refuses foreign hosts and
origins, non-JSON bodies and a kernel user picked by the request."""

import json
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pytest
import websocket

from conftest import mint
from jupyter_client_util import Kernel, http

# Runs for minutes unless interrupted.
LONG = "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0"


def sql(info, token, text):
    with flight_sql.connect(info["uri"], db_kwargs={
            adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"},
            autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(text)
        return cur.fetchall()


def start_kernel(info, token, env=None):
    status, k, _ = http("POST", f"{info['http']}/api/kernels", {"name": "tarn-sql", "env": env or {}}, token)
    assert status == 201, k
    return k


def complete(ws, code):
    mid = ws.send("complete_request", {"code": code, "cursor_pos": len(code)})
    return ws.until("complete_reply", mid)[-1]["content"]["matches"]


def test_a_downgraded_token_cannot_drop_or_write_through_a_kernel(writable):
    owner = mint(writable, "dora", roles=("*=owner",))
    reader = mint(writable, "dora", roles=("*=reader",))
    sql(writable, owner, "CREATE TABLE demo.Keep_SPRK AS SELECT 1 AS a")
    k = start_kernel(writable, owner)
    ws = Kernel(writable["http"], k["id"], reader)
    try:
        for attack in ("DROP TABLE demo.Keep_SPRK", "INSERT INTO demo.Keep_SPRK SELECT 2 AS a"):
            reply, _ = ws.execute(attack)
            assert reply["status"] == "error" and reply["ename"] == "TARN-2203 ACCESS_DENIED", (attack, reply)
        # Reading is what the reader's token allows.
        reply, _ = ws.execute("SELECT COUNT(*) AS n FROM demo.Keep_SPRK")
        assert reply["status"] == "ok", reply
    finally:
        ws.close()
    assert sql(writable, owner, "SELECT COUNT(*) FROM demo.Keep_SPRK") == [(1,)]

    # The kernel's own roles still serve a credential that holds them.
    ws = Kernel(writable["http"], k["id"], owner)
    try:
        reply, _ = ws.execute("INSERT INTO demo.Keep_SPRK SELECT 2 AS a")
        assert reply["status"] == "ok", reply
    finally:
        ws.close()
    assert sql(writable, owner, "SELECT COUNT(*) FROM demo.Keep_SPRK") == [(2,)]
    assert http("DELETE", f"{writable['http']}/api/kernels/{k['id']}", token=owner)[0] == 204


def test_a_cell_queued_before_the_credential_expired_is_refused_when_it_runs(writable):
    lasting = mint(writable, "eve", roles=("*=owner",))
    sql(writable, lasting, "CREATE TABLE demo.Late_SPRK AS SELECT 1 AS a")
    k = start_kernel(writable, lasting)
    brief = mint(writable, "eve", ttl="5s", roles=("*=owner",))
    ws = Kernel(writable["http"], k["id"], brief)
    try:
        # A long cell, then a write queued behind it while the token is valid.
        ws.send("execute_request", {"code": LONG, "stop_on_error": False})
        late = ws.send("execute_request", {"code": "INSERT INTO demo.Late_SPRK SELECT 2 AS a"})
        code, reason = ws.close_status(timeout=60)
        assert code == 4401 and "TARN-2202" in reason, (code, reason)
    finally:
        ws.close()
    # The expired token gets nowhere on REST either.
    status, body, _ = http("GET", f"{writable['http']}/api/kernels/{k['id']}", token=brief)
    assert status == 401 and body["error"]["code"] == 2202, body

    # Reattach with a fresh token and let the queue move on: the write sent
    # with the expired token is refused, not run.
    ws = Kernel(writable["http"], k["id"], lasting)
    try:
        assert http("POST", f"{writable['http']}/api/kernels/{k['id']}/interrupt", token=lasting)[0] == 204
        reply = ws.until("execute_reply", late, timeout=60)[-1]["content"]
        assert reply["status"] == "error" and reply["ename"] == "TARN-2202 CREDENTIALS_EXPIRED", reply
    finally:
        ws.close()
    assert sql(writable, lasting, "SELECT COUNT(*) FROM demo.Late_SPRK") == [(1,)]
    assert http("DELETE", f"{writable['http']}/api/kernels/{k['id']}", token=lasting)[0] == 204


def test_completions_and_catalogs_follow_the_callers_roles(writable):
    everywhere = mint(writable, "cora", roles=("*=owner",))
    demo_only = mint(writable, "cora", roles=("demo=reader",))
    k = start_kernel(writable, everywhere)
    ws = Kernel(writable["http"], k["id"], everywhere)
    try:
        # What the kernel's own roles see: the test can tell the difference.
        assert "hr" in complete(ws, "SELECT * FROM ")
        assert complete(ws, "SELECT * FROM hr.Sal") == ["Salaries"]
    finally:
        ws.close()
    ws = Kernel(writable["http"], k["id"], demo_only)
    try:
        workspaces = complete(ws, "SELECT * FROM ")
        assert "demo" in workspaces and "hr" not in workspaces, workspaces
        assert complete(ws, "SELECT * FROM hr.") == []
        assert complete(ws, "SELECT * FROM hr.Sal") == []
        assert complete(ws, "SELECT * FROM demo.Sig") == ["SigninLogs"]
        reply, msgs = ws.execute("SELECT DISTINCT table_schema FROM information_schema.tables")
        assert reply["status"] == "ok", reply
        rows = [m for m in msgs if m["header"]["msg_type"] == "execute_result"][0]["content"]["data"][
            "application/vnd.dataresource+json"]["data"]
        schemas = {r["table_schema"] for r in rows}
        assert "demo" in schemas and "hr" not in schemas, schemas
        reply, _ = ws.execute("SELECT * FROM hr.Salaries")
        assert reply["status"] == "error" and reply["ename"].startswith("TARN-2001"), reply
    finally:
        ws.close()
    assert http("DELETE", f"{writable['http']}/api/kernels/{k['id']}", token=everywhere)[0] == 204


def raw(method, url, body=None, headers=()):
    """(status, parsed JSON or None) with exactly the headers given."""
    req = urllib.request.Request(url, data=body, method=method)
    for name, value in headers:
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, (json.loads(data) if data else None)


def kernel_count(tarn):
    status, kernels, _ = http("GET", f"{tarn['http']}/api/kernels")
    assert status == 200
    return len(kernels)


def test_a_rebinding_or_cross_site_request_is_refused(tarn):
    base = tarn["http"]
    port = base.rsplit(":", 1)[1]
    before = kernel_count(tarn)
    # DNS rebinding: a page on evil.example resolved to 127.0.0.1.
    for path in ("/api/kernels", "/v1/sessions", "/v1/pools"):
        status, body = raw("GET", base + path, headers=[("Host", f"evil.example:{port}")])
        assert status == 403 and body["error"]["code"] == 2210, (path, status, body)
    # A page elsewhere posting to the laptop's gateway.
    body = json.dumps({"name": "tarn-sql"}).encode()
    status, err = raw("POST", base + "/api/kernels", body,
                      [("Content-Type", "application/json"), ("Origin", "http://evil.example")])
    assert status == 403 and err["error"]["code"] == 2210, err
    # The CORS-simple form of the same request: no preflight, so refused by type.
    status, err = raw("POST", base + "/api/kernels", body, [("Content-Type", "text/plain")])
    assert status == 415 and err["error"]["code"] == 2211, err
    status, err = raw("POST", base + "/v1/sessions", b"{}", [("Content-Type", "text/plain;charset=UTF-8")])
    assert status == 415 and err["error"]["code"] == 2211, err
    assert kernel_count(tarn) == before

    k = start_kernel(tarn, None)
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(base.replace("http://", "ws://") + f"/api/kernels/{k['id']}/channels",
                                        origin="http://evil.example", timeout=30)
        assert e.value.status_code == 403
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(base.replace("http://", "ws://") + f"/api/kernels/{k['id']}/channels",
                                        host=f"evil.example:{port}", timeout=30)
        assert e.value.status_code == 403

        # Loopback names and the gateway's own address work, with an origin or without.
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            status, _ = raw("GET", base + "/api/kernels", headers=[("Host", host)])
            assert status == 200, host
        status, _ = raw("GET", base + f"/api/kernels/{k['id']}", headers=[("Origin", "http://localhost:8888")])
        assert status == 200
        ws = Kernel(base, k["id"])  # websocket-client sends Origin: http://127.0.0.1:<port>
        try:
            reply, _ = ws.execute("SELECT 1 AS one")
            assert reply["status"] == "ok", reply
        finally:
            ws.close()
        # Probes answer whatever name they come by.
        assert raw("GET", base + "/healthz", headers=[("Host", "10.1.2.3:8060")])[0] == 200
    finally:
        assert http("DELETE", f"{base}/api/kernels/{k['id']}")[0] == 204


def test_a_request_cannot_pick_the_kernels_user(strict):
    token = mint(strict, "olga")
    status, body, _ = http("POST", f"{strict['http']}/api/kernels",
                           {"name": "tarn-sql", "env": {"KERNEL_USERNAME": "mallory"}}, token)
    assert status == 403 and body["error"]["code"] == 2203, body
    assert "KERNEL_USERNAME" in body["error"]["message"]
    _, mine, _ = http("GET", f"{strict['http']}/api/kernels", token=token)
    assert mine == []
    # Naming oneself is what notebook servers do, and fine.
    k = start_kernel(strict, token, {"KERNEL_USERNAME": "olga"})
    assert k["tarn"]["user"] == "olga"
    assert http("DELETE", f"{strict['http']}/api/kernels/{k['id']}", token=token)[0] == 204


@pytest.fixture(scope="module")
def named(lake):
    """Dev mode, also answering to a name an operator allowed."""
    from conftest import running
    yield from running(lake, env={"TARN_GATEWAY__HTTP_ALLOWED_HOSTS": "tarn.test.example, other.example:1",
                                  "TARN_GATEWAY__HTTP_ALLOWED_ORIGINS": "https://lab.test.example"})


def test_operators_allow_more_host_names_and_origins(named):
    base = named["http"]
    assert raw("GET", base + "/api/kernels", headers=[("Host", "tarn.test.example:8060")])[0] == 200
    assert raw("GET", base + "/api/kernels", headers=[("Host", "other.example:2")])[0] == 403
    assert raw("GET", base + "/api/kernels", headers=[("Host", "evil.example")])[0] == 403
    assert raw("GET", base + "/api/kernels", headers=[("Origin", "https://lab.test.example")])[0] == 200
    assert raw("GET", base + "/api/kernels", headers=[("Origin", "http://lab.test.example")])[0] == 403

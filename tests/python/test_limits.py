"""Authentication and every timeout, against a Tarn whose limits are
seconds (see STRICT_ENV in conftest.py) and which requires tokens."""

import os
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
import pytest

from conftest import STRICT_ENV, mint
from flight_sql_command import sql_command
from jupyter_client_util import Kernel, http, of_type

LONG = "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0"


def connect(strict, token):
    return flight_sql.connect(strict["uri"], db_kwargs={
        adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"})


def test_requests_without_a_valid_token_get_401_with_a_way_out(strict):
    status, body, headers = http("GET", f"{strict['http']}/api/kernels")
    assert status == 401 and body["error"]["code"] == 2201, body
    assert "tarn token" in body["error"]["fix"]
    assert headers.get("www-authenticate", "").startswith("Bearer")
    status, body, _ = http("GET", f"{strict['http']}/v1/sessions", token="tarn.forged.sig")
    assert status == 401 and body["error"]["code"] == 2204, body
    # Health stays open for probes.
    assert http("GET", f"{strict['http']}/healthz")[0] == 200

    with pytest.raises(Exception) as e:
        with flight_sql.connect(strict["uri"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "TARN-2201" in str(e.value)

    # The same token works on every protocol: Flight SQL bearer header,
    # basic credentials at handshake (token as password), REST, kernels.
    token = mint(strict, "erin")
    with connect(strict, token) as conn, conn.cursor() as cur:
        cur.execute("SELECT 7 AS n")
        assert cur.fetchone() == (7,)
    with flight_sql.connect(strict["uri"], db_kwargs={"username": "erin", "password": token}) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT 8 AS n")
        assert cur.fetchone() == (8,)
    status, s, _ = http("POST", f"{strict['http']}/v1/sessions", {}, token)
    assert status == 201 and s["user"] == "erin"
    assert http("DELETE", f"{strict['http']}/v1/sessions/{s['session_id']}", token=token)[0] == 204
    # Another user cannot see erin's job runs or leases, nor act on them.
    status, run, _ = http("POST", f"{strict['http']}/v1/job-runs", {"name": "nightly"}, token)
    assert status == 201 and run["user"] == "erin", run
    frank = mint(strict, "frank")
    assert http("GET", f"{strict['http']}/v1/job-runs/{run['run_id']}", token=frank)[0] == 404
    assert http("DELETE", f"{strict['http']}/v1/job-runs/{run['run_id']}", token=frank)[0] == 404
    _, runs, _ = http("GET", f"{strict['http']}/v1/job-runs", token=frank)
    assert run["run_id"] not in [r["run_id"] for r in runs["runs"]], runs
    assert http("DELETE", f"{strict['http']}/v1/job-runs/{run['run_id']}", token=token)[0] == 200
    # Another user cannot see or close erin's kernel.
    status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": "tarn-sql"}, token, "token")
    assert status == 201
    status, body, _ = http("DELETE", f"{strict['http']}/api/kernels/{k['id']}", token=mint(strict, "frank"))
    assert status == 404
    assert http("DELETE", f"{strict['http']}/api/kernels/{k['id']}", token=token)[0] == 204


def test_an_expired_credential_gets_401_but_a_running_query_finishes(strict):
    token = mint(strict, "gina", ttl="2s")
    client = flight.FlightClient(strict["uri"])
    opts = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    import pyarrow.flight as fl
    from pyarrow.flight import FlightDescriptor
    cmd = sql_command("SELECT * FROM SigninLogs")
    info = client.get_flight_info(FlightDescriptor.for_command(cmd), opts)
    reader = client.do_get(info.endpoints[0].ticket, opts)
    first = reader.read_chunk()
    assert first.data.num_rows > 0
    time.sleep(2.5)  # past the token's expiry, while the result streams
    rest = reader.read_all()
    total = first.data.num_rows + rest.num_rows
    with connect(strict, mint(strict, "gina")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM SigninLogs")
        assert total == cur.fetchone()[0]
    with pytest.raises(fl.FlightUnauthenticatedError) as e:
        client.get_flight_info(FlightDescriptor.for_command(cmd), opts)
    assert "TARN-2202 CREDENTIALS_EXPIRED" in str(e.value)
    status, body, _ = http("GET", f"{strict['http']}/api/kernels", token=token)
    assert status == 401 and body["error"]["code"] == 2202 and "tarn token" in body["error"]["fix"]


def test_a_query_over_the_time_limit_is_cancelled_naming_the_limit(strict):
    token = mint(strict, "hana")
    with connect(strict, token) as conn, conn.cursor() as cur:
        with pytest.raises(Exception) as e:
            cur.execute(LONG)
            cur.fetchall()
    assert "TARN-2808 QUERY_TIMEOUT" in str(e.value) and STRICT_ENV["TARN_GATEWAY__QUERY_TIMEOUT"] in str(e.value)

    status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": "tarn-sql"}, token)
    ws = Kernel(strict["http"], k["id"], token)
    try:
        mid = ws.send("execute_request", {"code": LONG})
        reply = ws.until("execute_reply", mid, timeout=60)[-1]["content"]
        assert reply["ename"] == "TARN-2808 QUERY_TIMEOUT", reply
    finally:
        ws.close()
        http("DELETE", f"{strict['http']}/api/kernels/{k['id']}", token=token)


def test_websocket_lifetime_closes_with_a_reason_and_the_kernel_survives(brief):
    strict = brief
    token = mint(strict, "ivan")
    status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": "tarn-sql"}, token)
    ws = Kernel(strict["http"], k["id"], token)
    code, reason = ws.close_status(timeout=30)
    assert code == 4001 and "CONNECTION_LIFETIME_REACHED" in reason, (code, reason)
    again = Kernel(strict["http"], k["id"], token)
    try:
        reply, msgs = again.execute("SELECT 3 AS n")
        assert reply["status"] == "ok"
        assert of_type(msgs, "execute_result")[0]["content"]["data"]["application/vnd.dataresource+json"]["data"] == [
            {"n": 3}]
    finally:
        again.close()
        http("DELETE", f"{strict['http']}/api/kernels/{k['id']}", token=token)


@pytest.mark.parametrize("kind", ["tarn-sql", "tarn-python"])
def test_an_idle_kernel_is_warned_then_ended_and_its_vcores_return(strict, kind):
    token = mint(strict, f"jude-{kind}")
    status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": kind}, token)
    assert status == 201, k
    lease = k["tarn"]["lease_id"]
    ws = Kernel(strict["http"], k["id"], token)
    warned = None
    while True:
        m = None
        try:
            m = ws.recv(timeout=30)
        except Exception:
            break
        if m["header"]["msg_type"] == "stream" and "Warning" in m["content"]["text"]:
            warned = m["content"]["text"]
        if m["header"]["msg_type"] == "stream" and "SESSION_TIMED_OUT" in m["content"]["text"]:
            break
    assert warned and "ends in 3s" in warned and "6s" in warned, warned
    # The websocket closes within the lifetime either way; after the session
    # ended, the kernel is gone with the reason, and its lease is released.
    status, body, _ = http("GET", f"{strict['http']}/api/kernels/{k['id']}", token=token)
    assert status == 404 and "inactivity" in body["error"]["message"], body
    _, leases, _ = http("GET", f"{strict['http']}/v1/leases", token=token)
    assert lease not in [x["lease_id"] for x in leases["leases"]], leases


def test_the_eleventh_user_is_refused_with_the_coded_error(strict):
    """Both kernel kinds count toward the same 10 users."""
    admin = mint(strict, "ops")
    # Sessions earlier tests left end at the 6 s idle timeout; wait for them,
    # so none ends while this test counts.
    deadline = time.time() + 30
    while True:
        _, pools, _ = http("GET", f"{strict['http']}/v1/pools", token=admin)
        if pools["interactive_users"] == 0 or time.time() > deadline:
            break
        time.sleep(0.25)
    free_users = pools["max_interactive_users"] - pools["interactive_users"]
    kinds = ["tarn-sql", "tarn-python"]
    opened = []
    try:
        # One Python kernel (the pool has one ready) among SQL kernels, so
        # that all are open well within the 6 s idle timeout: a Python
        # kernel past the pool waits for a new interpreter.
        for i in range(free_users):
            t = mint(strict, f"user{i:02d}")
            kind = "tarn-python" if i == 0 else "tarn-sql"
            status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": kind}, t)
            assert status == 201, k
            opened.append((k["id"], t))
        for kind in kinds:
            t = mint(strict, f"one-too-many-{kind}")
            status, body, _ = http("POST", f"{strict['http']}/api/kernels", {"name": kind}, t)
            assert status == 429 and body["error"]["code"] == 2304, body
        assert body["error"]["name"] == "USER_LIMIT_REACHED"
    finally:
        for kid, t in opened:
            http("DELETE", f"{strict['http']}/api/kernels/{kid}", token=t)


def test_an_oversized_message_closes_the_websocket_with_1009(strict):
    token = mint(strict, "kim")
    status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": "tarn-sql"}, token)
    ws = Kernel(strict["http"], k["id"], token)
    ws.send("execute_request", {"code": "SELECT '" + "x" * 100_000 + "'"})
    code, reason = ws.close_status()
    assert code == 1009 and "limit" in reason, (code, reason)
    reattach_and_run(strict, k["id"], token)


def reattach_and_run(strict, kernel_id, token):
    """A new websocket on the kernel runs a cell; then the kernel is deleted."""
    again = Kernel(strict["http"], kernel_id, token)
    try:
        reply, _ = again.execute("SELECT 1 AS ok")
        assert reply["status"] == "ok"
    finally:
        again.close()
        http("DELETE", f"{strict['http']}/api/kernels/{kernel_id}", token=token)


def test_a_websocket_closes_when_its_credential_expires(strict):
    token = mint(strict, "lena", ttl="2s")
    status, k, _ = http("POST", f"{strict['http']}/api/kernels", {"name": "tarn-sql"}, token)
    assert status == 201
    ws = Kernel(strict["http"], k["id"], token)
    code, reason = ws.close_status(timeout=30)
    assert code == 4401 and "CREDENTIALS_EXPIRED" in reason, (code, reason)
    reattach_and_run(strict, k["id"], mint(strict, "lena"))


@pytest.mark.parametrize("settings, cause, fix", [
    ("ballista.nope=1", "is not accepted", "remove it from session_settings"),
    ("datafusion.execution.target_partitions=4", "lease decides it", "session_vcores"),
    ("compression", "is not key=value", "key=value pairs"),
])
def test_a_bad_session_setting_stops_the_gateway_with_a_coded_error(tmp_path, settings, cause, fix):
    import subprocess
    from conftest import TARN
    env = dict(os.environ, TARN_GATEWAY__SESSION_SETTINGS=settings, RUST_BACKTRACE="0", RUST_LOG="error")
    cluster = tmp_path / "cluster"
    subprocess.run([str(TARN), "certs", "--dir", str(cluster)], check=True, capture_output=True)
    p = subprocess.run([str(TARN), "gateway", "--lake", str(tmp_path), "--auth", "dev",
                        "--cluster-dir", str(cluster),
                        "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
                       env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "TARN-2805" in out and cause in out and fix in out, out

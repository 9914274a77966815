"""Bounded memory and counts in the gateway, and shared sessions, with real
clients against a real `tarn standalone`."""

import os
import pathlib
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import running
from jupyter_client_util import Kernel, http

# The limits under test, small enough to reach in a test.
BOUNDED_ENV = {
    "TARN_GATEWAY__MAX_QUEUED_CELLS": "3",
    "TARN_GATEWAY__MAX_PREPARED_STATEMENTS": "4",
    "TARN_GATEWAY__MAX_SESSIONS_PER_USER": "3",
}

# Long enough that cells sent behind it are still waiting.
LONG = "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0"


@pytest.fixture(scope="module")
def bounded(lake):
    """Dev mode with small queue, prepared-statement and session limits."""
    yield from running(lake, [], BOUNDED_ENV)


def gateway_pid(info):
    """The pid of the standalone's gateway child (the one serving `uri`)."""
    port = info["uri"].rsplit(":", 1)[1]
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            args = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway" in args and any(a.endswith(f":{port}".encode()) for a in args):
            return int(p.name)
    raise AssertionError("no gateway process found")


def vm_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def test_a_repeat_bomb_gets_a_coded_error_and_the_gateway_stays_small(tarn):
    pid = gateway_pid(tarn)
    before = vm_kib(pid, "VmHWM")
    with flight_sql.connect(tarn["uri"]) as conn, conn.cursor() as cur:
        # 30 bytes of SQL asking for a 1.5 GB constant.
        with pytest.raises(Exception) as e:
            cur.execute("SELECT length(repeat('x', 1500000000)) AS n")
            cur.fetchall()
        assert "TARN-2904" in str(e.value), e.value
        assert "max_constant_bytes" in str(e.value) or "planning budget" in str(e.value), e.value
        # Many constants each under the budget cannot add up past it either.
        with pytest.raises(Exception) as e:
            cur.execute("SELECT length(" + " || ".join(["repeat('x', 10000000)"] * 40) + ") AS n")
            cur.fetchall()
        assert "TARN-2904" in str(e.value), e.value
        # The gateway still answers, and ordinary constants still fold.
        cur.execute("SELECT length(repeat('ab', 1000)) AS n")
        assert cur.fetchone() == (2000,)
    peak = vm_kib(pid, "VmHWM")
    # Without the bound the gateway's peak went from ~130 MB to ~6 GB.
    assert peak < 1024 * 1024, f"gateway peak RSS {before} KiB -> {peak} KiB"


def test_a_flood_of_cells_is_refused_past_the_queue_bound_and_the_kernel_lives_on(bounded):
    status, k, _ = http("POST", f"{bounded['http']}/api/kernels", {"name": "tarn-sql"})
    assert status == 201, k
    ws = Kernel(bounded["http"], k["id"])
    try:
        # The long cell runs first: wait until the kernel has taken it.
        first = ws.send("execute_request", {"code": LONG, "silent": False, "store_history": True,
                                            "stop_on_error": False})
        ws.until("execute_input", first)
        flood = [ws.send("execute_request", {"code": f"SELECT {i} AS n", "silent": False,
                                             "stop_on_error": False})
                 for i in range(10)]
        replies = {}
        interrupted = False
        deadline = time.time() + 120
        while len(replies) < len(flood) + 1 and time.time() < deadline:
            m = ws.recv(timeout=max(0.1, deadline - time.time()))
            if m["header"]["msg_type"] == "execute_reply":
                replies[m["parent_header"]["msg_id"]] = m["content"]
            if len(replies) == 7 and first not in replies and not interrupted:
                # Every refusal is in: no need to wait for the long cell.
                ws.send("interrupt_request", {}, channel="control")
                interrupted = True
        refused = [mid for mid in flood if replies[mid]["status"] == "error"]
        assert len(refused) == 7, [replies[m] for m in flood]
        for mid in refused:
            assert "2311" in replies[mid]["ename"], replies[mid]
            assert "KERNEL_QUEUE_FULL" in replies[mid]["ename"], replies[mid]
        # The three that were queued ran, in order, after the long one.
        ran = [mid for mid in flood if replies[mid]["status"] == "ok"]
        assert ran == flood[:3], [replies[m] for m in flood]
        # The kernel works on.
        reply, msgs = ws.execute("SELECT 42 AS answer")
        assert reply["status"] == "ok", reply
        assert any("42" in str(m["content"].get("data", {})) for m in msgs if m["header"]["msg_type"] == "execute_result")
    finally:
        ws.close()
        http("DELETE", f"{bounded['http']}/api/kernels/{k['id']}")


def test_prepared_statements_per_session_are_capped(bounded):
    # Basic credentials in dev mode: a handshake, a session of its own.
    with flight_sql.connect(bounded["uri"], db_kwargs={"username": "pat", "password": "x"}) as conn:
        cursors = [conn.cursor() for _ in range(5)]
        try:
            for c in cursors[:4]:
                c.adbc_prepare("SELECT 1 AS one")
            with pytest.raises(Exception) as e:
                cursors[4].adbc_prepare("SELECT 1 AS one")
            assert "TARN-2312" in str(e.value), e.value
            # Closing one frees its place.
            cursors[0].close()
            cursors[4].adbc_prepare("SELECT ? AS v")
            cursors[4].execute("SELECT ? AS v", parameters=(5,))
            assert cursors[4].fetchone() == (5,)
        finally:
            for c in cursors[1:]:
                c.close()


def test_sessions_per_user_are_capped(bounded):
    conns = []
    try:
        for _ in range(3):
            c = flight_sql.connect(bounded["uri"], db_kwargs={"username": "sam", "password": "x"})
            with c.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
            conns.append(c)
        with pytest.raises(Exception) as e:
            c = flight_sql.connect(bounded["uri"], db_kwargs={"username": "sam", "password": "x"})
            conns.append(c)
            with c.cursor() as cur:
                cur.execute("SELECT 1")
        assert "TARN-2313" in str(e.value), e.value
        # Kernels count too, and another user is not affected.
        status, body, _ = http("POST", f"{bounded['http']}/v1/sessions", {"user": "sam"})
        assert status == 429 and body["error"]["code"] == 2313, body
        status, body, _ = http("POST", f"{bounded['http']}/v1/sessions", {"user": "ann"})
        assert status == 201, body
        http("DELETE", f"{bounded['http']}/v1/sessions/{body['session_id']}")
        # One closes, and sam may open again.
        conns.pop(0).close()
        deadline = time.time() + 30
        while True:
            status, body, _ = http("POST", f"{bounded['http']}/v1/sessions", {"user": "sam"})
            if status == 201 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert status == 201, body
        http("DELETE", f"{bounded['http']}/v1/sessions/{body['session_id']}")
    finally:
        for c in conns:
            try:
                c.close()
            except Exception:
                pass


def test_one_client_closing_a_shared_session_leaves_the_others_statements(tarn):
    # Two anonymous connections share dev mode's one session.
    a = flight_sql.connect(tarn["uri"])
    b = flight_sql.connect(tarn["uri"])
    try:
        cb = b.cursor()
        cb.adbc_prepare("SELECT ? + 1 AS n")
        cb.execute("SELECT ? + 1 AS n", parameters=(1,))
        assert cb.fetchone() == (2,)
        ca = a.cursor()
        ca.execute("SELECT 1")
        ca.fetchall()
        ca.close()
        # Closing a connection sends Flight's CloseSession.
        a.close()
        a = None
        # b's prepared statement (the same handle) still runs.
        cb.execute("SELECT ? + 1 AS n", parameters=(41,))
        assert cb.fetchone() == (42,)
        cb.close()
    finally:
        for c in (a, b):
            if c is not None:
                c.close()

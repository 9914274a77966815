"""`tarn standalone` must come up whatever order its roles start in."""

import os
import signal
import subprocess

import pytest

from conftest import start

# Starts per run; CI uses a few, a release check runs 50
# (TARN_STARTS=50).
STARTS = int(os.environ.get("TARN_STARTS", "5"))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_standalone_becomes_ready_every_time(lake):
    for i in range(STARTS):
        started = start(lake, last=True)
        assert started, f"start {i + 1} of {STARTS} did not become ready"
        proc, _ = started
        # Ready means running: no role died of its start order.
        assert proc.poll() is None, open(started[1]["log"]).read()[-4000:]
        stop(proc)


def test_executors_and_the_gateway_wait_for_a_late_leader(lake):
    # The coordinator serves its port at once but leads only 3 s later:
    # every executor and the gateway connect while it is not yet leader.
    proc, info = start(lake, last=True, env={"TARN_TEST_LEADERSHIP_DELAY_MS": "3000"})
    try:
        assert proc.poll() is None
        log = open(info["log"], errors="replace").read()
        assert "leadership delayed" in log, log[-4000:]
        waited = log.count("waiting for a coordinator to lead")
        # Both executors and the gateway waited, and went on once it led.
        assert waited >= 3, log[-4000:]
        assert log.count("a coordinator leads; going on") >= 3, log[-4000:]
        assert "NOT_LEADER" not in log and "2902" not in log, log[-4000:]
    finally:
        stop(proc)


SPREAD_QUERY = ("SELECT ResultType, COUNT(*) AS n, COUNT(DISTINCT UserPrincipalName) AS users "
                "FROM SigninLogs GROUP BY ResultType ORDER BY ResultType")


def answer_and_log(info, sql):
    """The sorted answer of `sql` from a 2-vCore session, and the log's
    last `query dispatched` line after it."""
    import json
    import time
    import urllib.request
    import warnings

    import adbc_driver_flightsql.dbapi as flight_sql

    warnings.filterwarnings("ignore", message="Cannot disable autocommit")
    kwargs = {"adbc.flight.sql.rpc.call_header.x-tarn-vcores": "2"}
    with flight_sql.connect(info["uri"], db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetch_arrow_table().to_pylist()
    with urllib.request.urlopen(f"{info['http']}/readyz", timeout=5) as r:
        ready = json.load(r)
    # The dispatch line is logged before the first batch; give the log a
    # moment to be flushed to the file.
    for _ in range(50):
        lines = [line for line in open(info["log"], errors="replace") if "query dispatched" in line]
        if lines:
            break
        time.sleep(0.1)
    return rows, (lines[-1] if lines else ""), ready


# The demo tables are small: without this a grouping would run at one
# partition on one executor.
AT_LEASE_PARTITIONS = {"TARN_GATEWAY__DIRECT_SMALL_INPUT_BYTES": "0"}


def test_a_lease_spreads_over_two_interactive_executors(lake):
    # Control: one interactive executor holds the whole 2-vCore lease, so
    # the grouping runs lease-local.
    proc, info = start(lake, last=True, env=AT_LEASE_PARTITIONS)
    try:
        expected, line, ready = answer_and_log(info, SPREAD_QUERY)
        assert ready["interactive_executors"] == 1, ready
        assert 'execution="lease-local"' in line, line
    finally:
        stop(proc)
    # Two executors of one vCore each: the lease holds one on each, so the
    # same read runs as Ballista stages across them, with the same answer.
    proc, info = start(lake, last=True, extra=["--interactive-executors", "2", "--interactive-vcores", "1"],
                       env=AT_LEASE_PARTITIONS)
    try:
        got, line, ready = answer_and_log(info, SPREAD_QUERY)
        assert ready["interactive_executors"] == 2, ready
        assert 'execution="distributed"' in line, line
        assert "free on one executor" in line, line
        assert got == expected and len(got) > 1
    finally:
        stop(proc)

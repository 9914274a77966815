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

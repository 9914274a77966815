"""Jobs: schedule lateness, run overhead, and a 50-run burst draining.

Three measurements on one `tarn standalone` (schedules may fire every
second here: TARN_COORDINATOR__MIN_SCHEDULE_INTERVAL=1s):

- lateness: a job scheduled every second runs `SELECT 1`; for each of
  `--fires` scheduled runs, the time from its fire time to its first
  statement starting (both from the run's record), p50 / p99 / max;
- overhead: a one-statement job (`--sql`) run now, end to end (the run's
  record: submitted to ended), against the same statement over ADBC, each
  `--n` times, p50 / p99;
- burst: `--burst` runs of one job asked for at once drain with at most
  `max_running_jobs` (3) running at any moment — computed from the runs'
  own start and end times, not sampled.

Prints a summary and a JSON line, writes bench/results/jobs.json. Exits 1
if a run fails or more than three ever ran at once.

    .venv/bin/python bench/jobs.py [--fires 100] [--n 20] [--burst 50] [--tarn target/release/tarn]
"""

import argparse
import json
import pathlib
import sys
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import (DEFAULT_DEMO_LAKE, DEFAULT_TARN, command_line, machine, pct,  # noqa: E402
                    start_tarn, write_result)

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "expired", "skipped"}


def rest(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def create(http, body):
    status, job = rest("POST", f"{http}/v1/jobs", body)
    if status != 201:
        raise SystemExit(f"cannot create a job: {job}")
    return job["id"]


def wait_run(http, run_id, limit=300):
    deadline = time.time() + limit
    while time.time() < deadline:
        _, r = rest("GET", f"{http}/v1/job-runs/{run_id}")
        if r["status"] in ENDED:
            return r
        time.sleep(0.02)
    raise SystemExit(f"run {run_id} did not end in {limit} s")


def lateness(http, fires):
    job = create(http, {"name": "bench ticker", "workspace": "demo", "sql": "SELECT 1",
                        "schedule": {"every": "1s"}})
    done = []
    deadline = time.time() + fires * 3 + 60
    while len(done) < fires and time.time() < deadline:
        _, r = rest("GET", f"{http}/v1/jobs/{job}/runs")
        done = [x for x in r["runs"] if x["status"] == "succeeded" and x["trigger"] == "schedule"]
        time.sleep(1)
    rest("DELETE", f"{http}/v1/jobs/{job}")
    if len(done) < fires:
        raise SystemExit(f"only {len(done)} of {fires} scheduled runs succeeded in time")
    late = [x["result"]["statements"][0]["started_unix_ms"] - x["fire_unix_ms"] for x in done[:fires]]
    skipped = [x for x in r["runs"] if x["status"] == "skipped"]
    return {"fires": fires, "p50_ms": pct(late, 50), "p99_ms": pct(late, 99), "max_ms": max(late),
            "skipped_for_overlap": len(skipped)}


def overhead(http, uri, sql, n):
    job = create(http, {"name": "bench one statement", "workspace": "demo", "sql": sql})
    runs, adbc = [], []
    for _ in range(n):
        _, r = rest("POST", f"{http}/v1/jobs/{job}/runs", {})
        r = wait_run(http, r["run_id"])
        if r["status"] != "succeeded":
            raise SystemExit(f"the job failed: {r}")
        runs.append(r["ended_unix_ms"] - r["submitted_unix_ms"])
    with flight_sql.connect(uri, db_kwargs={"username": "bench", "password": "dev"}) as conn:
        for _ in range(n):
            t = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute(sql)
                cur.fetchall()
            adbc.append((time.perf_counter() - t) * 1000)
    rest("DELETE", f"{http}/v1/jobs/{job}")
    return {"n": n, "sql": sql, "job_p50_ms": pct(runs, 50), "job_p99_ms": pct(runs, 99),
            "adbc_p50_ms": round(pct(adbc, 50), 1), "adbc_p99_ms": round(pct(adbc, 99), 1)}


def burst(http, n):
    job = create(http, {"name": "bench burst", "workspace": "demo",
                        "sql": "SELECT count(*) FROM demo.SigninLogs", "vcores": 1})
    t = time.time()
    ids = []
    for _ in range(n):
        status, r = rest("POST", f"{http}/v1/jobs/{job}/runs", {})
        if status != 201:
            raise SystemExit(f"a run was refused: {r}")
        ids.append(r["run_id"])
    runs = [wait_run(http, i) for i in ids]
    drained = time.time() - t
    rest("DELETE", f"{http}/v1/jobs/{job}")
    # The most runs holding the job pool at once, from their own records.
    edges = sorted([(r["started_unix_ms"], 1) for r in runs] + [(r["ended_unix_ms"], -1) for r in runs],
                   key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    failed = [r for r in runs if r["status"] != "succeeded"]
    waits = [r["queue_wait_ms"] for r in runs]
    return {"runs": n, "drained_s": round(drained, 2), "most_running_at_once": most, "failed": len(failed),
            "queue_wait_p50_ms": pct(waits, 50), "queue_wait_max_ms": max(waits)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--lake", default=DEFAULT_DEMO_LAKE)
    ap.add_argument("--fires", type=int, default=100)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--sql", default="SELECT count(*) FROM demo.SigninLogs")
    args = ap.parse_args()
    tarn = start_tarn(args.tarn, args.lake, env={"TARN_COORDINATOR__MIN_SCHEDULE_INTERVAL": "1s",
                                                  "TARN_COORDINATOR__JOB_HISTORY": "1000"})
    try:
        payload = {"command": command_line(), "machine": machine(), "tarn": args.tarn}
        payload["overhead"] = overhead(tarn.http, tarn.flight, args.sql, args.n)
        print("overhead:", payload["overhead"], flush=True)
        payload["burst"] = burst(tarn.http, args.burst)
        print("burst:", payload["burst"], flush=True)
        payload["lateness"] = lateness(tarn.http, args.fires)
        print("lateness:", payload["lateness"], flush=True)
    finally:
        tarn.stop()
    print(json.dumps(payload))
    print("results:", write_result("jobs", payload))
    if payload["burst"]["failed"] or payload["burst"]["most_running_at_once"] > 3:
        sys.exit(1)


if __name__ == "__main__":
    main()

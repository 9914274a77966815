"""Small-query latency through Flight SQL (ADBC), end to end.

Starts `tarn standalone` (release build) on the demo lake unless --uri is
given, runs each query --warmup times, then --runs times, and prints p50 /
p99 per query plus a JSON line. Every query runs as a Ballista job on the
executors; nothing is answered in the gateway.

    .venv/bin/python bench/latency.py [--runs 200] [--tarn target/release/tarn]
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import warnings

import adbc_driver_flightsql.dbapi as flight_sql

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

ROOT = pathlib.Path(__file__).resolve().parents[1]

QUERIES = {
    "select_1": "SELECT 1",
    "count": "SELECT COUNT(*) FROM SigninLogs",
    "point": "SELECT TimeGenerated, IPAddress, ResultType FROM SigninLogs "
             "WHERE UserPrincipalName = 'megan.bowen@contoso.com' AND ResultType = '0'",
    "aggregate": "SELECT ResultType, COUNT(*) AS n FROM SigninLogs GROUP BY ResultType ORDER BY n DESC",
    "join": "SELECT i.Department, COUNT(*) AS n FROM SigninLogs s "
            "JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN GROUP BY i.Department",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tarn, lake):
    flight, http, coord = free_port(), free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="tarn-bench-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [tarn, "standalone", "--lake", lake, "--flight-addr", f"127.0.0.1:{flight}",
         "--http-addr", f"127.0.0.1:{http}", "--coordinator-addr", f"127.0.0.1:{coord}",
         "--state-dir", tempfile.mkdtemp(prefix="tarn-bench-state-")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=dict(os.environ, RUST_LOG="warn"),
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as r:
                if r.status == 200:
                    proc.http_url = f"http://127.0.0.1:{http}"
                    return proc, f"grpc://127.0.0.1:{flight}"
        except Exception:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("tarn did not become ready; log: " + log.name)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri")
    ap.add_argument("--tarn", default=str(ROOT / "target" / "release" / "tarn"))
    ap.add_argument("--lake", default=str(ROOT / "target" / "bench-lake"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    proc = None
    uri = args.uri
    if not uri:
        proc, uri = start(args.tarn, args.lake)
    results = {}
    try:
        with flight_sql.connect(uri) as conn, conn.cursor() as cur:
            for name, sql in QUERIES.items():
                for _ in range(args.warmup):
                    cur.execute(sql)
                    cur.fetch_arrow_table()
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    cur.execute(sql)
                    cur.fetch_arrow_table()
                    times.append((time.perf_counter() - t) * 1000)
                results[name] = {"p50_ms": round(pct(times, 50), 2), "p99_ms": round(pct(times, 99), 2)}
                print(f"{name:10s} p50 {results[name]['p50_ms']:7.2f} ms   p99 {results[name]['p99_ms']:7.2f} ms")
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    print(json.dumps({"bench": "latency", "runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()

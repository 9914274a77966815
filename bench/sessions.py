"""Session start: open and close interactive sessions, end to end.

A session is a vCore lease from the coordinator (written durably to its
state store before the client hears of it) plus a planning context in the
gateway. Two paths are timed, each open + close:

- REST: `POST /v1/sessions` then `DELETE /v1/sessions/{id}`;
- Flight SQL: a basic-auth handshake (what ADBC/JDBC do on connect) then
  the `CloseSession` action, with pyarrow.flight.

Starts `tarn standalone` (release build) on the demo lake unless --http and
--uri are given, and prints p50 / p99 per path plus a JSON line.

    cd bench && ../.venv/bin/python sessions.py [--n 1000] [--tarn ../target/release/tarn]
"""

import argparse
import json
import time
import urllib.request

import pyarrow.flight as flight

from latency import ROOT, pct, start


def rest_cycle(http):
    req = urllib.request.Request(
        f"{http}/v1/sessions", data=b'{"user": "bench"}', method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        sid = json.loads(r.read())["session_id"]
    req = urllib.request.Request(f"{http}/v1/sessions/{sid}", method="DELETE")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def flight_cycle(uri):
    client = flight.FlightClient(uri)
    token = client.authenticate_basic_token("bench", "dev")
    opts = flight.FlightCallOptions(headers=[token])
    list(client.do_action(flight.Action("CloseSession", b""), opts))
    client.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http")
    ap.add_argument("--uri")
    ap.add_argument("--tarn", default=str(ROOT / "target" / "release" / "tarn"))
    ap.add_argument("--lake", default=str(ROOT / "target" / "bench-lake"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    proc, http, uri = None, args.http, args.uri
    if not (http and uri):
        proc, uri = start(args.tarn, args.lake)
        http = proc.http_url
    results = {}
    try:
        for name, cycle, target in (("rest", rest_cycle, http), ("flight", flight_cycle, uri)):
            for _ in range(args.warmup):
                cycle(target)
            times = []
            for _ in range(args.n):
                t = time.perf_counter()
                cycle(target)
                times.append((time.perf_counter() - t) * 1000)
            results[name] = {"p50_ms": round(pct(times, 50), 2), "p99_ms": round(pct(times, 99), 2)}
            print(f"{name:7s} open+close p50 {results[name]['p50_ms']:7.2f} ms   p99 {results[name]['p99_ms']:7.2f} ms")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"bench": "sessions", "n": args.n, "results": results}))


if __name__ == "__main__":
    main()

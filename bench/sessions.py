"""Session start: open and close interactive sessions, end to end.

A session is a vCore lease from the coordinator (written durably to its
state store before the client hears of it) plus a planning context in the
gateway. Two paths are timed, each open + close, one after the other (a
session is closed before the next opens, and all run as the one user
`bench`, so the 10-interactive-user limit never applies):

- REST: `POST /v1/sessions` then `DELETE /v1/sessions/{id}`;
- Flight SQL: a basic-auth handshake (what ADBC/JDBC do on connect) then
  the `CloseSession` action, with pyarrow.flight.

A failed cycle is counted (by error code) and the run goes on. Afterwards
the script checks that nothing leaked: no session of `bench` left in
`GET /v1/sessions`, and the interactive pool's leased vCores back where
they were. Exits 1 on any failure or leak.

Starts `tarn standalone` (release build) on the demo lake unless --http and
--uri are given; prints p50 / p99 / max per path plus a JSON line, and
writes bench/results/sessions.json.

    .venv/bin/python bench/sessions.py [--n 1000] [--warmup 20] [--tarn target/release/tarn]
"""

import argparse
import collections
import json
import pathlib
import re
import sys
import time
import urllib.error
import urllib.request

import pyarrow.flight as flight

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import (DEFAULT_DEMO_LAKE, DEFAULT_TARN, command_line, machine, pct,  # noqa: E402
                    start_tarn, write_result)

USER = "bench"


def rest(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def rest_cycle(http):
    status, body = rest("POST", f"{http}/v1/sessions", {"user": USER})
    if status != 201:
        raise RuntimeError(f"POST /v1/sessions: HTTP {status} {body}")
    status, body2 = rest("DELETE", f"{http}/v1/sessions/{body['session_id']}")
    if status != 204:
        raise RuntimeError(f"DELETE /v1/sessions: HTTP {status} {body2}")


def flight_cycle(uri):
    client = flight.FlightClient(uri)
    try:
        token = client.authenticate_basic_token(USER, "dev")
        opts = flight.FlightCallOptions(headers=[token])
        list(client.do_action(flight.Action("CloseSession", b""), opts))
    finally:
        client.close()


def reason(e):
    m = re.search(r"TARN-\d{4}(?: [A-Z_]+)?", str(e)) or re.search(r'"code": ?(\d{4})', str(e))
    return m.group(0) if m else f"{type(e).__name__}: {str(e)[:120]}"


def leased(http):
    status, pools = rest("GET", f"{http}/v1/pools")
    if status != 200:
        return None
    return {p["name"]: p["leased_vcores"] for p in pools["pools"]}


def gateway_rss(tarn):
    """RSS in bytes of the standalone's gateway process (its child whose
    command line names the gateway role)."""
    import subprocess
    out = subprocess.run(["ps", "-o", "pid=,rss=,args=", "--ppid", str(tarn.proc.pid)],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, rss, cmd = line.split(None, 2)
        if " gateway" in cmd:
            return int(rss) * 1024
    raise SystemExit(f"no gateway process under {tarn.proc.pid}:\n{out}")


def idle(args):
    """Opens --idle sessions and keeps them open: the gateway's memory per
    idle session. Needs its own standalone (the pool and user limits are
    raised so that the sessions fit)."""
    tarn = start_tarn(args.tarn, args.lake, extra=["--interactive-vcores", str(args.idle + 16)],
                      env={"TARN_COORDINATOR__MAX_INTERACTIVE_USERS": str(args.idle_users + 1),
                           "TARN_GATEWAY__MAX_SESSIONS_PER_USER": str(args.idle // args.idle_users + 1)})
    try:
        # One session first, so lazily built state (the catalog, the pools)
        # is not counted per session.
        status, first = rest("POST", f"{tarn.http}/v1/sessions", {"user": "warm", "vcores": 1})
        assert status == 201, first
        time.sleep(1)
        before = gateway_rss(tarn)
        ids = []
        for i in range(args.idle):
            status, body = rest("POST", f"{tarn.http}/v1/sessions",
                                {"user": f"idle{i % args.idle_users}", "vcores": 1})
            if status != 201:
                raise SystemExit(f"session {i}: HTTP {status} {body}")
            ids.append(body["session_id"])
        time.sleep(2)
        after = gateway_rss(tarn)
        per = (after - before) / args.idle
        result = {"sessions": args.idle, "rss_before": before, "rss_after": after,
                  "bytes_per_session": round(per)}
        print(f"{args.idle} idle sessions: gateway RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB, "
              f"{per / 1024:.1f} KiB per session", flush=True)
        for sid in ids:
            rest("DELETE", f"{tarn.http}/v1/sessions/{sid}")
    finally:
        tarn.stop()
    payload = {"bench": "sessions-idle", "results": result, "command": command_line(), "machine": machine()}
    print(json.dumps(payload["results"]))
    print("results:", write_result("sessions-idle", payload))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", help="a running Tarn's HTTP base (http://host:port)")
    ap.add_argument("--uri", help="a running Tarn's Flight SQL address (grpc://host:port)")
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--lake", default=DEFAULT_DEMO_LAKE)
    ap.add_argument("--n", type=int, default=1000, help="measured open+close cycles per path")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--paths", default="rest,flight")
    ap.add_argument("--idle", type=int, default=0,
                    help="instead of cycles: open this many 1-vCore REST sessions (over --idle-users users), "
                         "keep them open, and report the gateway's RSS before and after")
    ap.add_argument("--idle-users", type=int, default=20)
    args = ap.parse_args()
    if args.idle:
        return idle(args)

    tarn, http, uri = None, args.http, args.uri
    if not (http and uri):
        tarn = start_tarn(args.tarn, args.lake)
        http, uri = tarn.http, tarn.flight
    results, failed, leaks = {}, False, {}
    cycles = {"rest": (rest_cycle, http), "flight": (flight_cycle, uri)}
    try:
        before = leased(http)
        for name in [p.strip() for p in args.paths.split(",") if p.strip()]:
            cycle, target = cycles[name]
            for _ in range(args.warmup):
                cycle(target)
            times, errors = [], collections.Counter()
            t0 = time.perf_counter()
            for _ in range(args.n):
                t = time.perf_counter()
                try:
                    cycle(target)
                except Exception as e:
                    errors[reason(e)] += 1
                    continue
                times.append((time.perf_counter() - t) * 1000)
            wall = time.perf_counter() - t0
            results[name] = {"n": len(times), "p50_ms": round(pct(times, 50), 2), "p99_ms": round(pct(times, 99), 2),
                             "max_ms": round(max(times), 2) if times else None,
                             "cycles_per_s": round(len(times) / wall, 1), "errors": dict(errors)}
            failed |= bool(errors)
            print(f"{name:7s} open+close p50 {results[name]['p50_ms']:7.2f} ms   p99 {results[name]['p99_ms']:7.2f} ms"
                  f"   max {results[name]['max_ms'] or 0:7.2f} ms   {len(times)} ok"
                  + (f", errors {dict(errors)}" if errors else ""), flush=True)
        # Leak check: closes are synchronous, so nothing should remain.
        _, listing = rest("GET", f"{http}/v1/sessions")
        left = [s for s in (listing or {}).get("sessions", []) if s["user"] == USER]
        after = leased(http)
        leaks = {"sessions_left": len(left), "leased_before": before, "leased_after": after}
        if left or (before is not None and after != before):
            failed = True
            print(f"LEAK: {leaks}")
    finally:
        if tarn:
            tarn.stop()
    payload = {"bench": "sessions", "n": args.n, "warmup": args.warmup, "results": results, "leaks": leaks,
               "command": command_line(), "machine": machine()}
    print(json.dumps({"bench": "sessions", "n": args.n, "results": results}))
    print("results:", write_result("sessions", payload))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

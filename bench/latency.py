"""Small-query latency through Flight SQL (ADBC), end to end.

Starts `tarn standalone` (release build) on the demo lake unless --uri is
given. Two parts:

1. Sequential (as in BENCHMARKS.md): one connection, each query --warmup
   times, then --runs times; p50 / p99 per query.
2. Concurrent (--concurrency, default "1,32"): for each level C and each of
   --concurrent-queries (default the point lookup and the aggregate), C
   client threads, each with its own ADBC connection and so its own Tarn
   session, run the query back to back until --requests requests have been
   made in all (or --max-seconds have passed); p50 / p99 / max latency and
   throughput per query and level. Every client authenticates as the one
   user `bench` (a user with several sessions counts once against the 10
   interactive users) and leases --client-vcores vCores (default 2, a
   "small" session); a started standalone offers enough interactive vCores
   for all clients at once (--interactive-vcores, default max(32, C × vCores)).
   The ADBC driver releases the GIL while it waits, so threads do not
   serialise on the client; --processes uses one process per client instead.

Every query runs as a Ballista job on the executors; nothing is answered in
the gateway. Prints a table and a JSON line; --out writes the JSON to a file
(default bench/results/latency.json when the concurrent part runs).

    .venv/bin/python bench/latency.py [--runs 200] [--concurrency 1,32] [--requests 1000]
"""

import argparse
import json
import multiprocessing as mp
import pathlib
import sys
import threading
import time
import warnings

import adbc_driver_flightsql.dbapi as flight_sql

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import (DEFAULT_DEMO_LAKE, DEFAULT_TARN, ROOT, command_line, machine, pct,  # noqa: E402,F401
                    start_tarn, write_result)

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

QUERIES = {
    "select_1": "SELECT 1",
    "count": "SELECT COUNT(*) FROM SigninLogs",
    "point": "SELECT TimeGenerated, IPAddress, ResultType FROM SigninLogs "
             "WHERE UserPrincipalName = 'megan.bowen@contoso.com' AND ResultType = '0'",
    "aggregate": "SELECT ResultType, COUNT(*) AS n FROM SigninLogs GROUP BY ResultType ORDER BY n DESC",
    "join": "SELECT i.Department, COUNT(*) AS n FROM SigninLogs s "
            "JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN GROUP BY i.Department",
}


def start(tarn, lake, extra=()):
    """(process, flight URI) of a started standalone; `process.http_url` is
    its HTTP base. Kept for the scripts that import it."""
    t = start_tarn(tarn, lake, extra)
    t.proc.http_url = t.http
    t.proc.tarn = t
    return t.proc, t.flight


def connect(uri, vcores=None, user="bench", token=None):
    kwargs = {"username": user, "password": token or "dev"}
    if vcores:
        kwargs["adbc.flight.sql.rpc.call_header.x-tarn-vcores"] = str(vcores)
    return flight_sql.connect(uri, db_kwargs=kwargs)


def client(uri, sql, vcores, token, counter, limit, deadline, barrier, out):
    """One client: its own connection; queries until the shared counter
    reaches `limit` or `deadline` passes. Appends (latencies_ms, errors)."""
    times, errors = [], []
    try:
        with connect(uri, vcores, token=token) as conn, conn.cursor() as cur:
            cur.execute(sql)
            expected = cur.fetch_arrow_table().num_rows  # warm; the answer's size
            barrier.wait(timeout=120)
            while time.time() < deadline.value:
                with counter.get_lock():
                    if counter.value >= limit:
                        break
                    counter.value += 1
                t = time.perf_counter()
                try:
                    cur.execute(sql)
                    n = cur.fetch_arrow_table().num_rows
                except Exception as e:
                    errors.append(str(e).splitlines()[0][:300])
                    continue
                times.append((time.perf_counter() - t) * 1000)
                if n != expected:
                    errors.append(f"wrong answer: {n} rows, expected {expected}")
    except Exception as e:
        errors.append(f"client: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}")
        try:
            barrier.abort()
        except Exception:
            pass
    out.put((times, errors))


def concurrent(uri, sql, clients, requests, max_seconds, vcores, token, processes):
    ctx = mp.get_context("spawn") if processes else None
    if processes:
        counter, deadline = ctx.Value("l", 0), ctx.Value("d", time.time() + 3600)
        barrier, out = ctx.Barrier(clients + 1), ctx.Queue()
        workers = [ctx.Process(target=client, args=(uri, sql, vcores, token, counter, requests, deadline,
                                                    barrier, out)) for _ in range(clients)]
    else:
        import queue
        counter, deadline = mp.Value("l", 0), mp.Value("d", time.time() + 3600)
        barrier, out = threading.Barrier(clients + 1), queue.Queue()
        workers = [threading.Thread(target=client, args=(uri, sql, vcores, token, counter, requests, deadline,
                                                         barrier, out), daemon=True) for _ in range(clients)]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=180)
    except Exception:
        pass  # a client failed to connect; its error is collected below
    t0 = time.time()
    deadline.value = t0 + max_seconds
    times, errors = [], []
    for _ in workers:
        ts, es = out.get(timeout=max_seconds + 300)
        times += ts
        errors += es
    wall = time.time() - t0
    for w in workers:
        w.join(timeout=30)
    return times, errors, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", help="a running Tarn's Flight SQL address (grpc://host:port)")
    ap.add_argument("--token", help="token (password) outside dev mode")
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--lake", default=DEFAULT_DEMO_LAKE)
    ap.add_argument("--runs", type=int, default=200, help="sequential part: measured runs per query (0 skips it)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--concurrency", default="1,32", help="comma list of client counts ('' skips)")
    ap.add_argument("--concurrent-queries", default="point,aggregate")
    ap.add_argument("--requests", type=int, default=1000, help="requests per query and concurrency level")
    ap.add_argument("--max-seconds", type=float, default=120, help="time bound per query and level")
    ap.add_argument("--client-vcores", type=int, default=2, help="vCores each concurrent client's session leases")
    ap.add_argument("--interactive-vcores", type=int, help="for a started standalone")
    ap.add_argument("--processes", action="store_true", help="one process per client instead of threads")
    ap.add_argument("--out", help="JSON result file")
    args = ap.parse_args()

    levels = [int(x) for x in args.concurrency.split(",") if x.strip() and int(x) > 0]
    tarn, uri = None, args.uri
    if not uri:
        want = max([32] + [c * args.client_vcores for c in levels])
        extra = ["--interactive-vcores", str(args.interactive_vcores or want)]
        tarn = start_tarn(args.tarn, args.lake, extra)
        uri = tarn.flight
    results, conc = {}, {}
    try:
        if args.runs > 0:
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
                    print(f"{name:10s} p50 {results[name]['p50_ms']:7.2f} ms   p99 {results[name]['p99_ms']:7.2f} ms",
                          flush=True)
        failed = False
        for c in levels:
            for name in [q.strip() for q in args.concurrent_queries.split(",") if q.strip()]:
                times, errors, wall = concurrent(uri, QUERIES[name], c, args.requests, args.max_seconds,
                                                 args.client_vcores, args.token, args.processes)
                r = {"clients": c, "query": name, "requests": len(times), "errors": len(errors),
                     "p50_ms": round(pct(times, 50), 2), "p99_ms": round(pct(times, 99), 2),
                     "max_ms": round(max(times), 2) if times else None,
                     "qps": round(len(times) / wall, 1) if wall else None,
                     "error_samples": sorted(set(errors))[:5]}
                conc[f"{name}@{c}"] = r
                failed |= bool(errors)
                print(f"{name:10s} x{c:<3d} clients  p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   "
                      f"max {r['max_ms'] or 0:7.2f} ms   {r['qps']:7.1f} q/s   {len(times)} ok, {len(errors)} errors",
                      flush=True)
                for e in r["error_samples"]:
                    print(f"    error: {e}")
    finally:
        if tarn:
            tarn.stop()
    payload = {"bench": "latency", "runs": args.runs, "results": results}
    if conc:
        payload.update({"concurrent": conc, "requests": args.requests, "client_vcores": args.client_vcores,
                        "clients_as": "processes" if args.processes else "threads",
                        "command": command_line(), "machine": machine()})
    print(json.dumps({k: v for k, v in payload.items() if k != "machine"}))
    if conc or args.out:
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
        else:
            print("results:", write_result("latency", payload))
    if conc and failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

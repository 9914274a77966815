"""Kernels: start a kernel and run its first cell, and how fast an
interrupt stops a long cell. `--kind tarn-sql` (default) or `--kind
tarn-python` (a hosted IPython process: the first cell is `1 + 1`, the long
cell a `time.sleep`); `--pause` spaces the cycles out as notebooks opening
one after another do, so the gateway's pool of started interpreters
refills behind them (`--pause 0` measures a burst instead).

- start: `POST /api/kernels`, websocket attach, `kernel_info_request`, a
  `SELECT 1` cell to its `execute_reply`, `DELETE` — what a notebook does
  when it opens (the service takes minutes here). --n cycles (default
  1000), one after the other, all as the one dev-mode user (anonymous), so
  a kernel is closed before the next opens and the 10-user limit never
  applies. Each phase is timed too: the POST alone is what "session start"
  means (the lease is taken there).
- interrupt: a cell running a cross join for minutes; once its progress
  display shows it on the executors, `POST /api/kernels/{id}/interrupt`,
  timed until the cell's `execute_reply` (status error, TARN-2804).
  --interrupts times (default 5).

A failed cycle is counted by error code and the run goes on; afterwards no
kernel may be left (`GET /api/kernels`) and the interactive pool's leased
vCores must be back where they were. Exits 1 on any failure or leak.

Starts `tarn standalone` (release build) on the demo lake unless --http is
given; prints p50 / p99 / max per measurement plus a JSON line, and writes
bench/results/kernels.json.

    .venv/bin/python bench/kernels.py [--n 1000] [--interrupts 5] [--tarn target/release/tarn]
    .venv/bin/python bench/kernels.py --kind tarn-python --n 100 --pause 1
"""

import argparse
import collections
import json
import pathlib
import re
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import (DEFAULT_DEMO_LAKE, DEFAULT_TARN, ROOT, command_line, machine, pct,  # noqa: E402
                    start_tarn, write_result)

sys.path.insert(0, str(ROOT / "tests" / "python"))
from jupyter_client_util import Kernel, http  # noqa: E402

LONG = "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0"
PHASES = ("post", "attach_info", "first_cell", "delete")


KIND = {"name": "tarn-sql"}
FIRST = {"tarn-sql": "SELECT 1 AS one", "tarn-python": "1 + 1"}
SLOW = {"tarn-sql": LONG, "tarn-python": "import time\ntime.sleep(600)"}


def start_cycle(base):
    """Phase durations (ms) of one kernel's life."""
    out = {}
    t = time.perf_counter()
    status, k, _ = http("POST", f"{base}/api/kernels", {"name": KIND["name"]})
    if status != 201:
        raise RuntimeError(f"POST /api/kernels: HTTP {status} {k}")
    out["post"] = time.perf_counter()
    ws = None
    try:
        ws = Kernel(base, k["id"])
        mid = ws.send("kernel_info_request", {})
        ws.until("kernel_info_reply", mid)
        out["attach_info"] = time.perf_counter()
        reply, _ = ws.execute(FIRST[KIND["name"]])
        if reply["status"] != "ok":
            raise RuntimeError(f"first cell: {reply.get('ename')} {reply.get('evalue')}")
        out["first_cell"] = time.perf_counter()
    finally:
        if ws:
            ws.close()
        status, body, _ = http("DELETE", f"{base}/api/kernels/{k['id']}")
    if status != 204:
        raise RuntimeError(f"DELETE /api/kernels: HTTP {status} {body}")
    out["delete"] = time.perf_counter()
    prev, phases = t, {}
    for p in PHASES:
        phases[p] = (out[p] - prev) * 1000
        prev = out[p]
    phases["total"] = (out["delete"] - t) * 1000
    return phases


def interrupt_once(base):
    status, k, _ = http("POST", f"{base}/api/kernels", {"name": KIND["name"]})
    if status != 201:
        raise RuntimeError(f"POST /api/kernels: HTTP {status} {k}")
    ws = Kernel(base, k["id"])
    python = KIND["name"] == "tarn-python"
    try:
        mid = ws.send("execute_request", {"code": SLOW[KIND["name"]]})
        # Running: on the executors (SQL), or the cell's code started (Python).
        ws.until("execute_input" if python else "update_display_data", mid, timeout=60)
        if python:
            time.sleep(0.2)
        t = time.perf_counter()
        http("POST", f"{base}/api/kernels/{k['id']}/interrupt")
        reply = ws.until("execute_reply", mid, timeout=60)[-1]["content"]
        took = (time.perf_counter() - t) * 1000
        assert reply["ename"] == ("KeyboardInterrupt" if python else "TARN-2804 CANCELLED"), reply
        return took
    finally:
        ws.close()
        http("DELETE", f"{base}/api/kernels/{k['id']}")


def reason(e):
    m = re.search(r"TARN-\d{4}(?: [A-Z_]+)?", str(e)) or re.search(r"'code': ?(\d{4})", str(e))
    return m.group(0) if m else f"{type(e).__name__}: {str(e)[:120]}"


def leased(base):
    status, pools, _ = http("GET", f"{base}/v1/pools")
    return {p["name"]: p["leased_vcores"] for p in pools["pools"]} if status == 200 else None


def summary(xs):
    return {"p50_ms": round(pct(xs, 50), 2), "p99_ms": round(pct(xs, 99), 2),
            "max_ms": round(max(xs), 2) if xs else None, "n": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", help="a running Tarn's HTTP base (http://host:port)")
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--lake", default=DEFAULT_DEMO_LAKE)
    ap.add_argument("--n", type=int, default=1000, help="measured kernel start cycles")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--interrupts", type=int, default=5, help="measured interrupts (0 skips)")
    ap.add_argument("--kind", default="tarn-sql", choices=["tarn-sql", "tarn-python"])
    ap.add_argument("--pause", type=float, default=0.0, help="seconds between cycles")
    args = ap.parse_args()
    KIND["name"] = args.kind
    tarn, base = None, args.http
    if not base:
        tarn = start_tarn(args.tarn, args.lake, env={
            "TARN_GATEWAY__PYTHON_KERNEL_PYTHON": str(ROOT / ".kernel-env" / "bin" / "python")})
        base = tarn.http
    results, failed, leaks = {}, False, {}
    try:
        before = leased(base)
        for _ in range(args.warmup):
            start_cycle(base)
        phases = collections.defaultdict(list)
        errors = collections.Counter()
        for _ in range(args.n):
            time.sleep(args.pause)
            try:
                for p, v in start_cycle(base).items():
                    phases[p].append(v)
            except Exception as e:
                errors[reason(e)] += 1
        results["start_first_cell"] = dict(summary(phases["total"]), errors=dict(errors))
        results["phases"] = {p: summary(phases[p]) for p in PHASES}
        failed |= bool(errors)
        if args.interrupts:
            times, ierr = [], collections.Counter()
            for _ in range(args.interrupts):
                try:
                    times.append(interrupt_once(base))
                except Exception as e:
                    ierr[reason(e)] += 1
            results["interrupt"] = dict(summary(times), errors=dict(ierr))
            failed |= bool(ierr)
        for name in ("start_first_cell", "interrupt"):
            if name in results:
                r = results[name]
                print(f"{name:17s} p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   "
                      f"max {r['max_ms'] or 0:8.2f} ms   {r['n']} ok" + (f", errors {r['errors']}" if r["errors"] else ""))
        print("  phases (p50 / p99 ms): " + ", ".join(
            f"{p} {results['phases'][p]['p50_ms']:.2f} / {results['phases'][p]['p99_ms']:.2f}" for p in PHASES))
        status, left, _ = http("GET", f"{base}/api/kernels")
        after = leased(base)
        leaks = {"kernels_left": len(left or []), "leased_before": before, "leased_after": after}
        if left or after != before:
            failed = True
            print(f"LEAK: {leaks}")
    finally:
        if tarn:
            tarn.stop()
    name = "kernels" if args.kind == "tarn-sql" else "kernels-python"
    print(json.dumps({"bench": name, "n": args.n, "results": results}))
    print("results:", write_result(name, {"bench": name, "kind": args.kind, "pause_s": args.pause,
                                          "n": args.n, "results": results, "leaks": leaks,
                                               "command": command_line(), "machine": machine()}))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

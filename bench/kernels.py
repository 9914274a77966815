"""Kernels: start a `tarn-sql` kernel and run its first cell, and how fast
an interrupt stops a long cell.

- start: `POST /api/kernels`, websocket attach, `kernel_info_request`, a
  `SELECT 1` cell to its `execute_reply`, `DELETE` — what a notebook does
  when it opens (the service takes minutes here);
- interrupt: a cell running a cross join for minutes; once its progress
  display shows it on the executors, `POST /api/kernels/{id}/interrupt`,
  timed until the cell's `execute_reply` (status error, TARN-2804).

Starts `tarn standalone` (release build) on the demo lake unless --http is
given, and prints p50 / max per measurement plus a JSON line.

    cd bench && ../.venv/bin/python kernels.py [--n 20] [--tarn ../target/release/tarn]
"""

import argparse
import json
import sys
import time

from latency import ROOT, pct, start

sys.path.insert(0, str(ROOT / "tests" / "python"))
from jupyter_client_util import Kernel, http  # noqa: E402

LONG = "SELECT COUNT(*) FROM SecurityEvent a CROSS JOIN SecurityEvent b WHERE a.EventID + b.EventID > 0"


def start_cycle(base):
    status, k, _ = http("POST", f"{base}/api/kernels", {"name": "tarn-sql"})
    assert status == 201, k
    ws = Kernel(base, k["id"])
    mid = ws.send("kernel_info_request", {})
    ws.until("kernel_info_reply", mid)
    reply, _ = ws.execute("SELECT 1 AS one")
    assert reply["status"] == "ok", reply
    ws.close()
    assert http("DELETE", f"{base}/api/kernels/{k['id']}")[0] == 204


def interrupt_once(base):
    status, k, _ = http("POST", f"{base}/api/kernels", {"name": "tarn-sql"})
    ws = Kernel(base, k["id"])
    try:
        mid = ws.send("execute_request", {"code": LONG})
        ws.until("update_display_data", mid, timeout=60)
        t = time.perf_counter()
        http("POST", f"{base}/api/kernels/{k['id']}/interrupt")
        reply = ws.until("execute_reply", mid, timeout=60)[-1]["content"]
        took = (time.perf_counter() - t) * 1000
        assert reply["ename"] == "TARN-2804 CANCELLED", reply
        return took
    finally:
        ws.close()
        http("DELETE", f"{base}/api/kernels/{k['id']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http")
    ap.add_argument("--tarn", default=str(ROOT / "target" / "release" / "tarn"))
    ap.add_argument("--lake", default=str(ROOT / "target" / "bench-lake"))
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    proc, base = None, args.http
    if not base:
        proc, _ = start(args.tarn, args.lake)
        base = proc.http_url
    results = {}
    try:
        for _ in range(3):
            start_cycle(base)
        times = []
        for _ in range(args.n):
            t = time.perf_counter()
            start_cycle(base)
            times.append((time.perf_counter() - t) * 1000)
        results["start_first_cell"] = {"p50_ms": round(pct(times, 50), 2), "max_ms": round(max(times), 2)}
        times = [interrupt_once(base) for _ in range(max(3, args.n // 4))]
        results["interrupt"] = {"p50_ms": round(pct(times, 50), 2), "max_ms": round(max(times), 2)}
        for name, r in results.items():
            print(f"{name:17s} p50 {r['p50_ms']:8.2f} ms   max {r['max_ms']:8.2f} ms")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"bench": "kernels", "n": args.n, "results": results}))


if __name__ == "__main__":
    main()

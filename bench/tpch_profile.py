"""Where Tarn's TPC-H time goes: per query, the end-to-end time split into
the Ballista job (from the scheduler's own log: queued → finished, of which
planning) and what lies outside it (gateway planning, submission, result
fetch), with the job's stages and tasks, beside in-process DataFusion on
the same files.

Starts `tarn standalone` on the TPC-H lake of bench/tpch.py (run that first
for the data) with the scheduler's and executors' job logs on, runs each
query once to warm up and once measured, and reads the log lines that
measured run wrote. Queries that ran directly (no Ballista job) show no job.

    .venv/bin/python bench/tpch_profile.py            # SF1, all 22
    .venv/bin/python bench/tpch_profile.py --queries 4,21,22
"""

import argparse
import datetime
import os
import pathlib
import re
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import DATA, DEFAULT_TARN, command_line, start_tarn, write_result  # noqa: E402
from tpch import QUERIES_DIR, WORKSPACE, DataFusionEngine, TarnEngine, parse_queries, sf_name  # noqa: E402

LOG = ("warn,ballista_scheduler::scheduler_server::query_stage_scheduler=info,"
       "ballista_scheduler::state=info,ballista_executor::executor_server=info")
TS = re.compile(r"^(\S+Z)\s")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ts(line):
    m = TS.match(line)
    return datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() if m else None


def parse(lines):
    """Jobs in the log lines: id → queued, submitted, finished, planning, stages, tasks."""
    jobs = {}
    for raw in lines:
        line = ANSI.sub("", raw)
        t = ts(line)
        if t is None:
            continue
        if m := re.search(r"Job queued: \[(\w+)\]", line):
            jobs.setdefault(m.group(1), {})["queued"] = t
        elif m := re.search(r"Job \[(\w+)\] planning took ([\d.]+)(µs|ms|s)", line):
            v = float(m.group(2)) * {"µs": 1e-3, "ms": 1, "s": 1e3}[m.group(3)]
            jobs.setdefault(m.group(1), {})["planning_ms"] = v
        elif m := re.search(r"Job finished successfully: \[(\w+)\]", line):
            jobs.setdefault(m.group(1), {})["finished"] = t
        elif m := re.search(r"Execute task\s*: \[TID (\w+)/(\d+)\.", line):
            j = jobs.setdefault(m.group(1), {})
            j.setdefault("stages", set()).add(int(m.group(2)))
            j["tasks"] = j.get("tasks", 0) + 1
        elif m := re.search(r"Finished task\s*: \[TID (\w+)/\d+\.[^\]]*\] in ([\d.]+)(µs|ms|s)\b", line):
            v = float(m.group(2)) * {"µs": 1e-3, "ms": 1, "s": 1e3}[m.group(3)]
            j = jobs.setdefault(m.group(1), {})
            j["task_ms"] = j.get("task_ms", 0) + v
    return jobs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--queries", default="1-22")
    ap.add_argument("--vcores", type=int, default=os.cpu_count())
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--parts", type=int, default=8)
    args = ap.parse_args()
    lake = pathlib.Path(DATA) / f"tpch-sf{sf_name(args.sf)}" / "lake"
    if not (lake / WORKSPACE / "lineitem").exists():
        raise SystemExit(f"no TPC-H data in {lake}: run bench/tpch.py --sf {args.sf} first")
    queries = parse_queries(args.queries)
    texts = {q: (QUERIES_DIR / f"q{q:02d}.sql").read_text() for q in queries}
    os.environ["RUST_LOG"] = LOG
    tarn = start_tarn(args.tarn, lake, ["--no-demo"])
    rows = []
    try:
        engine = TarnEngine(tarn.flight, args.vcores)
        df = DataFusionEngine(lake, args.vcores)
        for q in queries:
            engine.run(texts[q])
            df.run(texts[q])
            t = time.perf_counter()
            df.run(texts[q])
            df_ms = (time.perf_counter() - t) * 1000
            start = os.path.getsize(tarn.log)
            t = time.perf_counter()
            engine.run(texts[q])
            e2e = (time.perf_counter() - t) * 1000
            time.sleep(0.2)
            with open(tarn.log, errors="replace") as f:
                f.seek(start)
                jobs = parse(f.readlines())
            done = [j for j in jobs.values() if "queued" in j and "finished" in j]
            job_ms = sum((j["finished"] - j["queued"]) * 1000 for j in done)
            row = {"query": f"q{q:02d}", "end_to_end_ms": round(e2e, 1), "datafusion_ms": round(df_ms, 1),
                   "jobs": len(done), "job_ms": round(job_ms, 1),
                   "planning_ms": round(sum(j.get("planning_ms", 0) for j in done), 1),
                   "outside_job_ms": round(e2e - job_ms, 1) if done else None,
                   "stages": sum(len(j.get("stages", ())) for j in done),
                   "task_ms": round(sum(j.get("task_ms", 0) for j in done), 1),
                   "tasks": sum(j.get("tasks", 0) for j in done)}
            rows.append(row)
            print(f"  {row['query']}  end-to-end {e2e:8.1f} ms  job {job_ms:8.1f} ms  "
                  f"(planning {row['planning_ms']:6.1f})  outside {row['outside_job_ms'] or 0:7.1f} ms  "
                  f"stages {row['stages']:3d}  tasks {row['tasks']:4d} busy {row['task_ms']:8.1f} ms  DataFusion {df_ms:8.1f} ms", flush=True)
        engine.close()
        df.close()
    finally:
        tarn.stop()
    tot = {k: round(sum((r[k] or 0) for r in rows), 1)
           for k in ("end_to_end_ms", "datafusion_ms", "job_ms", "planning_ms", "outside_job_ms", "stages", "tasks",
                     "task_ms")}
    print(f"\n  total  end-to-end {tot['end_to_end_ms']:.0f} ms, in jobs {tot['job_ms']:.0f} ms "
          f"(scheduler planning {tot['planning_ms']:.0f} ms), outside jobs {tot['outside_job_ms']:.0f} ms, "
          f"{tot['stages']:.0f} stages, {tot['tasks']:.0f} tasks busy {tot['task_ms']:.0f} ms in all; "
          f"DataFusion {tot['datafusion_ms']:.0f} ms")
    path = write_result(f"tpch-profile-sf{sf_name(args.sf)}", {
        "bench": "tpch-profile", "sf": args.sf, "vcores": args.vcores, "command": command_line(),
        "queries": rows, "totals": tot})
    print(f"results: {path}")


if __name__ == "__main__":
    main()

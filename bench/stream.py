"""Streaming throughput: `SELECT * FROM tpch.lineitem` over Flight SQL,
read batch by batch, in Arrow bytes per second, against pyarrow reading the
very same Parquet files in the same run.

- Tarn: pyarrow.flight (default; a `CommandStatementQuery` built by hand,
  as in README) or ADBC (`--client adbc`, `fetch_record_batch()`), one
  session leasing --vcores vCores (default the core count); every endpoint
  of the FlightInfo is read (one after the other) and each batch dropped
  once counted, so the client holds one batch at a time.
- Local: `pyarrow.dataset` over the table's Parquet files, `to_batches()`
  with threads, counted the same way (decode only, no network, no Tarn).

Bytes are the sum of `RecordBatch.nbytes` (the Arrow data the batches
reference); `get_total_buffer_size()` is recorded too. The data is the
TPC-H lake made by bench/tpch.py (SF1 by default; generated when missing).
Starts `tarn standalone --no-demo` on that lake unless --flight is given.
Prints GB/s (10^9 bytes per second) for both, writes
bench/results/stream-sf<N>.json.

    .venv/bin/python bench/stream.py [--sf 1] [--runs 3] [--client pyarrow|adbc]
"""

import argparse
import os
import pathlib
import statistics
import sys
import time
import warnings

import pyarrow.dataset as ds
import pyarrow.flight as flight

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import DATA, DEFAULT_TARN, command_line, machine, start_tarn, write_result  # noqa: E402
from tpch import default_parts, parquet_files, prepare, sf_name  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "python"))
from flight_sql_command import sql_command  # noqa: E402

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

SQL = "SELECT * FROM tpch.lineitem"
ENDPOINTS = []  # endpoints per FlightInfo seen (pyarrow client)


def count(batches):
    rows = nbytes = buffers = 0
    first = None
    t = time.perf_counter()
    for b in batches:
        if first is None:
            first = time.perf_counter() - t
        rows += b.num_rows
        nbytes += b.nbytes
        buffers += b.get_total_buffer_size()
    return rows, nbytes, buffers, first


def flight_batches(uri, sql, vcores, token):
    client = flight.FlightClient(uri)
    hdrs = [(b"x-tarn-vcores", str(vcores).encode())]
    auth = client.authenticate_basic_token("stream-bench", token or "dev", flight.FlightCallOptions(headers=hdrs))
    opts = flight.FlightCallOptions(headers=[auth])
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(sql_command(sql)), opts)
        ENDPOINTS.append(len(info.endpoints))
        for ep in info.endpoints:
            reader = client.do_get(ep.ticket, opts)
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                yield chunk.data
    finally:
        try:
            list(client.do_action(flight.Action("CloseSession", b""), opts))
        except Exception:
            pass
        client.close()


class AdbcClient:
    def __init__(self, uri, vcores, token):
        import adbc_driver_flightsql.dbapi as flight_sql
        self.conn = flight_sql.connect(uri, db_kwargs={
            "username": "stream-bench", "password": token or "dev",
            "adbc.flight.sql.rpc.call_header.x-tarn-vcores": str(vcores)})

    def batches(self, sql):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            yield from cur.fetch_record_batch()

    def close(self):
        self.conn.close()


def local_schema(files):
    """The files' schema with string views read as plain strings: what a
    Delta reader (Tarn) returns, so both sides count the same Arrow bytes."""
    import pyarrow as pa
    schema = ds.dataset(files, format="parquet").schema
    return pa.schema([f.with_type(pa.string()) if f.type == pa.string_view() else f for f in schema])


def local_batches(files, schema):
    return ds.dataset(files, format="parquet", schema=schema).to_batches(use_threads=True)


def datafusion_batches(files, vcores):
    """In-process DataFusion (PyPI `datafusion` 55, the engine Tarn embeds)
    streaming the same SELECT * over the same files, string views off so
    it produces the Arrow types Tarn returns."""
    import datafusion
    cfg = (datafusion.SessionConfig().with_target_partitions(vcores)
           .set("datafusion.execution.parquet.schema_force_view_types", "false"))
    ctx = datafusion.SessionContext(cfg)
    ctx.register_parquet("lineitem", str(pathlib.Path(files[0]).parent))
    return (b.to_pyarrow() for b in ctx.sql(SQL.replace("tpch.", "")).execute_stream())


def measure(label, make, runs, warmup):
    for _ in range(warmup):
        count(make())
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        rows, nbytes, buffers, first = count(make())
        s = time.perf_counter() - t
        out.append({"seconds": round(s, 4), "rows": rows, "bytes": nbytes, "buffer_bytes": buffers,
                    "first_batch_s": round(first or 0, 4), "gb_per_s": round(nbytes / s / 1e9, 3),
                    "mrows_per_s": round(rows / s / 1e6, 2)})
        print(f"  {label:8s} {rows:>12,} rows  {nbytes / 1e9:7.3f} GB  {s:7.3f} s  {nbytes / s / 1e9:6.3f} GB/s"
              f"  {rows / s / 1e6:6.2f} Mrows/s  first batch {1000 * (first or 0):6.1f} ms", flush=True)
    med = statistics.median(r["gb_per_s"] for r in out)
    return {"runs": out, "median_gb_per_s": med, "rows": out[-1]["rows"], "bytes": out[-1]["bytes"],
            "median_mrows_per_s": statistics.median(r["mrows_per_s"] for r in out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--client", choices=["pyarrow", "adbc"], default="pyarrow")
    ap.add_argument("--vcores", type=int, default=os.cpu_count())
    ap.add_argument("--flight", help="a running Tarn whose lake holds workspace `tpch` from bench/tpch.py")
    ap.add_argument("--token")
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--parts", type=int)
    ap.add_argument("--data-dir", default=str(DATA))
    args = ap.parse_args()

    lake, info = prepare(args.sf, args.parts or default_parts(args.sf), args.data_dir)
    files = parquet_files(lake, "lineitem")
    tarn, uri = None, args.flight
    results = {}
    try:
        if not uri:
            tarn = start_tarn(args.tarn, lake, ["--no-demo"])
            uri = tarn.flight
        print(f"{SQL} at SF{sf_name(args.sf)} ({info['rows']['lineitem']:,} rows, {len(files)} Parquet files)")
        if args.client == "adbc":
            client = AdbcClient(uri, args.vcores, args.token)
            try:
                results["tarn"] = measure("tarn", lambda: client.batches(SQL), args.runs, args.warmup)
            finally:
                client.close()
        else:
            results["tarn"] = measure("tarn", lambda: flight_batches(uri, SQL, args.vcores, args.token),
                                      args.runs, args.warmup)
    finally:
        if tarn:
            tarn.stop()
    schema = local_schema(files)
    results["parquet"] = measure("parquet", lambda: local_batches(files, schema), args.runs, args.warmup)
    try:
        results["datafusion"] = measure("datafusion", lambda: datafusion_batches(files, args.vcores),
                                        args.runs, args.warmup)
    except ImportError:
        print("[datafusion] not importable: skipped")
    if ENDPOINTS:
        results["tarn"]["endpoints"] = sorted(set(ENDPOINTS))
    problems = []
    if results["tarn"]["bytes"] != results["parquet"]["bytes"]:
        print(f"note: Arrow bytes differ (Tarn {results['tarn']['bytes']:,}, Parquet read "
              f"{results['parquet']['bytes']:,}): different Arrow types for the same data")
    if results["tarn"]["rows"] != info["rows"]["lineitem"]:
        problems.append(f"Tarn streamed {results['tarn']['rows']} rows, lineitem has {info['rows']['lineitem']}")
    ratio = results["tarn"]["median_gb_per_s"] / results["parquet"]["median_gb_per_s"]
    print(f"\nTarn {results['tarn']['median_gb_per_s']:.3f} GB/s ({args.client}, {args.vcores} vCores)   "
          f"pyarrow Parquet {results['parquet']['median_gb_per_s']:.3f} GB/s   ratio {ratio:.2f}")
    if "datafusion" in results:
        # Rows, not bytes: DataFusion's batches count their Arrow bytes
        # differently (buffers shared between sliced batches).
        df_ratio = results["tarn"]["median_mrows_per_s"] / results["datafusion"]["median_mrows_per_s"]
        print(f"in-process DataFusion {results['datafusion']['median_mrows_per_s']:.2f} Mrows/s, "
              f"Tarn {results['tarn']['median_mrows_per_s']:.2f} Mrows/s: Tarn / DataFusion {df_ratio:.2f}")
    print("\n```sh\n" + command_line() + "\n```")
    path = write_result(f"stream-sf{sf_name(args.sf)}", {
        "bench": "stream", "sql": SQL, "sf": args.sf, "client": args.client, "vcores": args.vcores,
        "results": results, "tarn_over_parquet": round(ratio, 3),
        "tarn_over_datafusion_rows": (round(results["tarn"]["median_mrows_per_s"]
                                            / results["datafusion"]["median_mrows_per_s"], 3)
                                 if "datafusion" in results else None),
        "problems": problems,
        "command": command_line(), "machine": machine()})
    print("results:", path)
    for p in problems:
        print("!! " + p)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()

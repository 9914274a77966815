"""TPC-H through Tarn (Flight SQL, ADBC) against in-process DataFusion and
DuckDB over the very same Parquet files.

Data: `tpchgen-cli` writes Parquet (Snappy, --parts files per table) into
bench/.data/tpch-sf<N>/lake/tpch/<table>/, and `deltalake.convert_to_deltalake`
adds a `_delta_log` beside the files (protocol 1/2: no column mapping, no
deletion vectors), so the folder is at once a Tarn lake (workspace `tpch`)
and a plain Parquet data set: every engine reads the same bytes. Generated
once per scale factor and number of parts, then reused.

Tarn: `tarn standalone --no-demo --lake bench/.data/tpch-sf<N>/lake` on free
loopback ports (or --flight for a running one whose lake holds that `tpch`
workspace), one ADBC connection (basic auth; any password in dev mode, a
token with --token) whose session leases --vcores vCores (default: the
machine's cores) and whose calls carry `x-tarn-workspace: tpch`, so the
query texts use unqualified table names. A lease of N vCores gives the
session's queries N partitions, the same as DataFusion's target_partitions.

DataFusion: the PyPI `datafusion` package (Tarn embeds DataFusion 55; the
version used is printed), one SessionContext with target_partitions = the
core count, tables registered over the same folders. DuckDB: the PyPI
`duckdb` package with threads = the core count, views over read_parquet().

Stock Ballista (`--ballista`): `bench/ballista-stock`, a small binary over
the same Ballista 55 crates Tarn embeds, set up the way
`SessionContext::standalone()` does it (Ballista's standalone scheduler,
pull-staged, default task policy, one executor with a vCore per core,
Ballista's default settings) and registering the same Parquet folders.
Build it with `cargo build --release -p ballista-stock`. It runs twice:
`ballista` with target_partitions = --vcores (like every other engine
here), and `ballista-defaults` with Ballista's own default of 16
(--ballista-runs runs, since it is slow). PyPI's `ballista` has no
manylinux wheel, so the crates are the way to run it here.

Tarn on Azure Blob Storage (`--engines tarn-azurite`, or `--azurite`): the
same Delta tables uploaded (once per run) into Azurite, the Azure Storage
emulator from npm (`dev/setup.sh --python` installs it under .tools/), and a
second `tarn standalone --lake az://lake/tpch-sf<N>` reading them through
the Azure client, beside the local-disk lake. Azurite keeps blobs on local
disk too, so the difference is the cost of the object-store path (HTTP,
range reads, listing), not of a network.

Per query and engine: --warmup unmeasured runs, then --runs measured runs;
the median is reported, Tarn / DataFusion per query and for the sum of
medians. Row counts must agree between engines, and so must the values
(numbers to a relative 1e-6, rows compared in sorted order): a difference is
printed loudly and the script exits 1. Results go to
bench/results/tpch-sf<N>.json; a Markdown table and the command line are
printed for BENCHMARKS.md.

    .venv/bin/python bench/tpch.py                    # SF1, 3 runs
    .venv/bin/python bench/tpch.py --sf 10            # SF10
    .venv/bin/python bench/tpch.py --sf 0.01 --runs 1 --queries 1,6   # a smoke test
"""

import argparse
import datetime
import decimal
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import warnings

import pyarrow.parquet as pq

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import DATA, DEFAULT_TARN, ROOT, Tarn, command_line, machine, start_tarn, write_result  # noqa: E402

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

QUERIES_DIR = pathlib.Path(__file__).resolve().parent / "tpch"
TABLES = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
WORKSPACE = "tpch"


# --------------------------------------------------------------------------
# data

def sf_name(sf):
    return f"{sf:g}"


def default_parts(sf):
    # About 25 MB of lineitem Parquet per file at any scale, never fewer
    # than 8 files: Tarn gives each partition whole files, DataFusion and
    # DuckDB split files by row group / byte range.
    return max(8, int(round(8 * sf)))


def tpchgen_bin():
    here = pathlib.Path(sys.executable).parent / "tpchgen-cli"
    return str(here) if here.exists() else (shutil.which("tpchgen-cli") or "tpchgen-cli")


def prepare(sf, parts, data_dir):
    """Generates (once) and returns the lake root holding workspace `tpch`."""
    from deltalake import DeltaTable, convert_to_deltalake

    root = pathlib.Path(data_dir) / f"tpch-sf{sf_name(sf)}"
    lake = root / "lake"
    ws = lake / WORKSPACE
    marker = root / "READY.json"
    want = {"sf": sf, "parts": parts, "compression": "snappy", "field_ids": False}
    if marker.exists():
        have = json.loads(marker.read_text())
        if all(have.get(k) == v for k, v in want.items()):
            return lake, have
        print(f"[data] {root} was made with {have}; regenerating with {want}", flush=True)
    if root.exists():
        shutil.rmtree(root)
    ws.mkdir(parents=True)
    version = subprocess.run([tpchgen_bin(), "--version"], capture_output=True, text=True).stdout.strip()
    t = time.perf_counter()
    print(f"[data] {version}: TPC-H SF{sf_name(sf)} as Parquet, {parts} parts per table, into {ws}", flush=True)
    subprocess.run([tpchgen_bin(), "parquet", "-s", sf_name(sf), "--parts", str(parts),
                    "--field-ids", "false", "-o", str(ws), "--quiet"], check=True)
    rows = {}
    for table in TABLES:
        folder = ws / table
        if not folder.is_dir():
            # With one part tpchgen-cli writes <table>.parquet beside the folders.
            single = ws / f"{table}.parquet"
            folder.mkdir()
            single.rename(folder / f"{table}.1.parquet")
        convert_to_deltalake(str(folder))
        dt = DeltaTable(str(folder))
        proto = dt.protocol()
        config = dt.metadata().configuration
        if proto.min_reader_version > 1 or proto.reader_features or "delta.columnMapping.mode" in config:
            raise SystemExit(f"{folder}: Delta features Tarn refuses: {proto} {config}")
        rows[table] = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))
    info = dict(want, tpchgen=version, rows=rows,
                bytes=sum(f.stat().st_size for f in ws.rglob("*.parquet")),
                generated_s=round(time.perf_counter() - t, 1))
    marker.write_text(json.dumps(info, indent=2) + "\n")
    print(f"[data] ready in {info['generated_s']} s: {rows['lineitem']:,} lineitem rows, "
          f"{info['bytes'] / 1e6:,.0f} MB of Parquet", flush=True)
    return lake, info


AZ_ACCOUNT = "devstoreaccount1"
# Azurite's documented development key.
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_lake(lake, sf):
    """Starts Azurite and uploads the lake into it: (url, env, process)."""
    import concurrent.futures
    import socket
    import tempfile
    from azure.storage.blob import BlobServiceClient
    from common import free_port

    binary = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise SystemExit(f"{binary} missing: run dev/setup.sh --python")
    port = free_port()
    proc = subprocess.Popen([str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--location", tempfile.mkdtemp(prefix="tarn-bench-azurite-"), "--silent",
                             "--skipApiVersionCheck"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("azurite did not start")
            time.sleep(0.1)
    client = BlobServiceClient(account_url=f"http://127.0.0.1:{port}/{AZ_ACCOUNT}",
                               credential={"account_name": AZ_ACCOUNT, "account_key": AZ_KEY})
    container = client.create_container("lake")
    prefix = f"tpch-sf{sf_name(sf)}"
    files = [f for f in pathlib.Path(lake).rglob("*") if f.is_file()]
    t = time.perf_counter()

    def upload(f):
        with open(f, "rb") as data:
            container.upload_blob(f"{prefix}/{f.relative_to(lake).as_posix()}", data, overwrite=True)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, files))
    print(f"[azurite] {len(files)} files uploaded in {time.perf_counter() - t:.1f} s", flush=True)
    env = {"AZURE_STORAGE_ACCOUNT_NAME": AZ_ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": AZ_KEY,
           "AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{port}"}
    return f"az://lake/{prefix}", env, proc


def parquet_files(lake, table):
    return sorted(str(p) for p in (pathlib.Path(lake) / WORKSPACE / table).glob("*.parquet"))


# --------------------------------------------------------------------------
# engines: each has .name, .version, .run(sql) -> pyarrow.Table, .close()

class TarnEngine:
    name = "tarn"

    def __init__(self, uri, vcores, token=None, user="tpch-bench", timeout=600):
        import adbc_driver_flightsql.dbapi as flight_sql
        kwargs = {
            "username": user, "password": token or "dev",
            "adbc.flight.sql.rpc.call_header.x-tarn-workspace": WORKSPACE,
            "adbc.flight.sql.rpc.call_header.x-tarn-vcores": str(vcores),
            "adbc.flight.sql.rpc.timeout_seconds.query": str(timeout),
            "adbc.flight.sql.rpc.timeout_seconds.fetch": str(timeout),
        }
        self.conn = flight_sql.connect(uri, db_kwargs=kwargs)
        self.cur = self.conn.cursor()
        self.version = self.conn.adbc_get_info().get("vendor_version", "?")
        self.label = "Tarn"

    def run(self, sql):
        self.cur.execute(sql)
        return self.cur.fetch_arrow_table()

    def close(self):
        self.cur.close()
        self.conn.close()


class DataFusionEngine:
    name = "datafusion"

    def __init__(self, lake, partitions):
        import datafusion
        from datafusion import SessionConfig, SessionContext
        self.version = datafusion.__version__
        self.label = f"DataFusion {self.version}"
        self.ctx = SessionContext(SessionConfig().with_target_partitions(partitions))
        for t in TABLES:
            self.ctx.register_parquet(t, str(pathlib.Path(lake) / WORKSPACE / t) + "/", file_extension=".parquet")

    def run(self, sql):
        return self.ctx.sql(sql).to_arrow_table()

    def close(self):
        self.ctx = None


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, lake, threads):
        import duckdb
        self.version = duckdb.__version__
        self.label = f"DuckDB {self.version}"
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {int(threads)}")
        for t in TABLES:
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in parquet_files(lake, t))
            self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet([{files}])")

    def run(self, sql):
        rel = self.con.sql(sql)
        fetch = getattr(rel, "to_arrow_table", None) or getattr(rel, "arrow")
        return fetch()

    def close(self):
        self.con.close()


# --------------------------------------------------------------------------
# result checks

def normalize(table):
    """Rows as tuples of comparable values, sorted."""
    cols = [c.to_pylist() for c in table.columns]
    rows = []
    for i in range(table.num_rows):
        row = []
        for c in cols:
            v = c[i]
            if isinstance(v, (decimal.Decimal, float, int)) and not isinstance(v, bool):
                row.append(float(v))
            elif isinstance(v, (datetime.date, datetime.datetime)):
                row.append(v.isoformat())
            else:
                row.append(v)
        rows.append(tuple(row))

    def key(r):
        return tuple((0, round(v, 2)) if isinstance(v, float) else (1, str(v)) for v in r)
    return sorted(rows, key=key)


def same_values(a, b):
    """None when equal, else a description of the first difference."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} rows"
    for i, (ra, rb) in enumerate(zip(a, b)):
        if len(ra) != len(rb):
            return f"row {i}: {len(ra)} vs {len(rb)} columns"
        for j, (x, y) in enumerate(zip(ra, rb)):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6):
                    return f"row {i} column {j}: {x!r} vs {y!r}"
            elif x != y:
                return f"row {i} column {j}: {x!r} vs {y!r}"
    return None


# --------------------------------------------------------------------------

def parse_queries(spec):
    out = []
    for part in spec.split(","):
        part = part.strip().lower().lstrip("q")
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b.lstrip("q")) + 1))
        elif part:
            out.append(int(part))
    bad = [q for q in out if not 1 <= q <= 22]
    if bad:
        raise SystemExit(f"no such TPC-H query: {bad}")
    return out


def run_engine(engine, queries, texts, runs, warmup, results):
    print(f"\n== {engine.label} ==", flush=True)
    for q in queries:
        r = results[q]
        try:
            for _ in range(warmup):
                engine.run(texts[q])
            times = []
            table = None
            for _ in range(runs):
                t = time.perf_counter()
                table = engine.run(texts[q])
                times.append((time.perf_counter() - t) * 1000)
            r["engines"][engine.name] = {"times_ms": [round(x, 2) for x in times],
                                         "median_ms": round(statistics.median(times), 2),
                                         "rows": table.num_rows}
            r["_tables"][engine.name] = table
            print(f"  q{q:02d} {statistics.median(times):10.1f} ms   {table.num_rows:6d} rows", flush=True)
        except Exception as e:  # a failing query is a finding, not a crash
            msg = f"{type(e).__name__}: {e}".strip()
            r["engines"][engine.name] = {"error": msg}
            print(f"  q{q:02d} FAILED: {msg}", flush=True)
            if os.environ.get("TPCH_TRACEBACK"):
                traceback.print_exc()


def run_stock_ballista(binary, lake, queries, name, runs, warmup, partitions, vcores, results):
    """Stock Ballista standalone in its own process; fills `results`."""
    cmd = [binary, "--data", str(pathlib.Path(lake) / WORKSPACE), "--queries", str(QUERIES_DIR),
           "--only", ",".join(str(q) for q in queries), "--runs", str(runs), "--warmup", str(warmup),
           "--vcores", str(vcores)]
    if partitions:
        cmd += ["--target-partitions", str(partitions)]
    print(f"\n== stock Ballista ({name}) ==\n  {' '.join(cmd)}", flush=True)
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "error"))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, check=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for q in queries:
        v = report["queries"][f"q{q:02d}"]
        if "error" in v or not v["times_ms"]:
            results[q]["engines"][name] = {"error": v.get("error", "no run")}
            continue
        results[q]["engines"][name] = {"times_ms": [round(x, 2) for x in v["times_ms"]],
                                       "median_ms": round(statistics.median(v["times_ms"]), 2),
                                       "rows": v["rows"]}
    tp = report["target_partitions"]
    label = f"{report['engine']}, target_partitions {tp}" + ("" if partitions else " (its default)")
    return {"label": label, "version": report["engine"], "target_partitions": tp}


def fmt_ms(v):
    return "—" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", type=float, default=1.0, help="scale factor (default 1; 10 for SF10)")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per query and engine (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs first")
    ap.add_argument("--queries", default="1-22", help="e.g. 1-22, 1,3,6 (default all)")
    ap.add_argument("--engines", default="tarn,datafusion,duckdb",
                    help="comma list of tarn, tarn-staged (every multi-stage read as Ballista stages), "
                         "tarn-spread (the lease spread over two executors on this host), "
                         "datafusion, duckdb (missing packages are skipped)")
    ap.add_argument("--azurite", action="store_true",
                    help="also run Tarn over the same tables in Azurite (engine tarn-azurite)")
    ap.add_argument("--ballista", action="store_true",
                    help="also run stock Ballista 55 standalone (bench/ballista-stock), with target_partitions "
                         "= --vcores and with Ballista's defaults")
    ap.add_argument("--ballista-bin", default=str(ROOT / "target" / "release" / "ballista-stock"),
                    help="the ballista-stock binary (cargo build --release -p ballista-stock)")
    ap.add_argument("--ballista-runs", type=int, default=1,
                    help="measured runs of stock Ballista with its defaults (no warm-up)")
    ap.add_argument("--flight", help="a running Tarn (grpc://host:port) whose lake holds this workspace `tpch`")
    ap.add_argument("--token", help="password/token for --flight outside dev mode")
    ap.add_argument("--tarn", default=DEFAULT_TARN, help="tarn binary (default target/release/tarn, env TARN_BIN)")
    ap.add_argument("--vcores", type=int, default=os.cpu_count(),
                    help="vCores the Tarn session leases = DataFusion target_partitions = DuckDB threads "
                         "(default: cores)")
    ap.add_argument("--interactive-vcores", type=int,
                    help="vCores the standalone's interactive executor offers (default: Tarn's default, 32)")
    ap.add_argument("--parts", type=int, help="Parquet files per table (default max(8, 8*sf))")
    ap.add_argument("--data-dir", default=str(DATA), help="cache of generated data (default bench/.data)")
    ap.add_argument("--timeout", type=int, default=600, help="Flight SQL call timeout per query, seconds")
    ap.add_argument("--out", help="JSON result file (default bench/results/tpch-sf<N>.json)")
    args = ap.parse_args()

    if args.ballista and not os.path.exists(args.ballista_bin):
        raise SystemExit(f"{args.ballista_bin} is missing: cargo build --release -p ballista-stock")

    queries = parse_queries(args.queries)
    texts = {q: (QUERIES_DIR / f"q{q:02d}.sql").read_text() for q in queries}
    parts = args.parts or default_parts(args.sf)
    lake, data_info = prepare(args.sf, parts, args.data_dir)
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.azurite and "tarn-azurite" not in wanted:
        wanted.insert(wanted.index("tarn") + 1 if "tarn" in wanted else 0, "tarn-azurite")
    if args.ballista:
        wanted += [e for e in ("ballista", "ballista-defaults") if e not in wanted]
    azurite = None

    results = {q: {"engines": {}, "_tables": {}} for q in queries}
    labels = {}
    tarn = None
    try:
        for name in wanted:
            if name == "tarn":
                if args.flight:
                    tarn = Tarn(args.flight, None)
                else:
                    extra = ["--no-demo"]
                    if args.interactive_vcores:
                        extra += ["--interactive-vcores", str(args.interactive_vcores)]
                    print(f"[tarn] starting {args.tarn} standalone on {lake}", flush=True)
                    tarn = start_tarn(args.tarn, lake, extra)
                    print(f"[tarn] ready: {tarn.flight} (log {tarn.log})", flush=True)
                engine = TarnEngine(tarn.flight, args.vcores, token=args.token, timeout=args.timeout)
                # The running Tarn must read this data, not some other tpch.
                got = engine.run("SELECT COUNT(*) AS n FROM lineitem").column(0)[0].as_py()
                if got != data_info["rows"]["lineitem"]:
                    raise SystemExit(f"Tarn's tpch.lineitem has {got} rows, the local data "
                                     f"{data_info['rows']['lineitem']}: point it at --lake {lake}")
            elif name == "tarn-staged":
                # The same Tarn with every multi-stage read as Ballista
                # stages: what lease-local runs save on one host.
                extra = ["--no-demo"]
                if args.interactive_vcores:
                    extra += ["--interactive-vcores", str(args.interactive_vcores)]
                print(f"[tarn-staged] starting {args.tarn} standalone on {lake}, execution = distributed", flush=True)
                tarn = start_tarn(args.tarn, lake, extra, env={"TARN_GATEWAY__EXECUTION": "distributed"})
                engine = TarnEngine(tarn.flight, args.vcores, token=args.token, timeout=args.timeout)
                engine.name, engine.label = "tarn-staged", "Tarn, Ballista stages (execution = distributed)"
            elif name == "tarn-spread":
                # Two interactive executors on this host, each offering
                # half the lease: the session's vCores span both, so every
                # multi-stage read runs as Ballista stages with shuffles
                # between the executors, the distributed path's cost.
                half = max(1, args.vcores // 2)
                extra = ["--no-demo", "--interactive-executors", "2", "--interactive-vcores", str(half)]
                print(f"[tarn-spread] starting {args.tarn} standalone on {lake}, two interactive executors "
                      f"of {half} vCores", flush=True)
                tarn = start_tarn(args.tarn, lake, extra)
                engine = TarnEngine(tarn.flight, args.vcores, token=args.token, timeout=args.timeout)
                engine.name, engine.label = "tarn-spread", f"Tarn, lease over 2 executors ({half}+{half} vCores)"
            elif name == "tarn-azurite":
                url, env, azurite = azurite_lake(lake, args.sf)
                print(f"[tarn-azurite] starting {args.tarn} standalone on {url}", flush=True)
                tarn = start_tarn(args.tarn, url, ["--no-demo"], env=env)
                engine = TarnEngine(tarn.flight, args.vcores, token=args.token, timeout=args.timeout)
                engine.name, engine.label = "tarn-azurite", "Tarn (Azurite)"
                got = engine.run("SELECT COUNT(*) AS n FROM lineitem").column(0)[0].as_py()
                if got != data_info["rows"]["lineitem"]:
                    raise SystemExit(f"Tarn on Azurite reads {got} lineitem rows, not {data_info['rows']['lineitem']}")
            elif name == "datafusion":
                try:
                    engine = DataFusionEngine(lake, args.vcores)
                except ImportError:
                    print("[datafusion] not importable: skipped", flush=True)
                    continue
            elif name in ("ballista", "ballista-defaults"):
                defaults = name == "ballista-defaults"
                labels[name] = run_stock_ballista(
                    args.ballista_bin, lake, queries, name,
                    runs=args.ballista_runs if defaults else args.runs,
                    warmup=0 if defaults else args.warmup,
                    partitions=None if defaults else args.vcores,
                    vcores=args.vcores, results=results)
                continue
            elif name == "duckdb":
                try:
                    engine = DuckDBEngine(lake, args.vcores)
                except ImportError:
                    print("[duckdb] not importable: skipped", flush=True)
                    continue
            else:
                raise SystemExit(f"unknown engine {name!r}")
            labels[name] = {"label": engine.label, "version": engine.version}
            try:
                run_engine(engine, queries, texts, args.runs, args.warmup, results)
            finally:
                engine.close()
            if name in ("tarn", "tarn-staged", "tarn-spread", "tarn-azurite") and tarn is not None:
                tarn.stop()
                tarn = None
            if azurite is not None:
                azurite.kill()
                azurite.wait()
                azurite = None
    finally:
        if tarn is not None:
            tarn.stop()
        if azurite is not None:
            azurite.kill()

    # ---- checks
    problems = []
    engines = list(labels)
    for q in queries:
        r = results[q]
        ok = {e: v for e, v in r["engines"].items() if "error" not in v}
        for e, v in r["engines"].items():
            if "error" in v:
                problems.append(f"q{q:02d} failed on {labels[e]['label']}: {v['error']}")
        counts = {e: v["rows"] for e, v in ok.items()}
        r["rows_match"] = len(set(counts.values())) <= 1
        if not r["rows_match"]:
            problems.append(f"q{q:02d} ROW COUNT MISMATCH: {counts}")
        elif len(ok) > 1:
            norm = {e: normalize(t) for e, t in r["_tables"].items()}
            ref = "datafusion" if "datafusion" in norm else next(iter(norm))
            for e, rows in norm.items():
                if e != ref:
                    diff = same_values(rows, norm[ref])
                    if diff:
                        r.setdefault("value_mismatch", {})[e] = diff
                        problems.append(f"q{q:02d} VALUES DIFFER {e} vs {ref}: {diff}")
        del r["_tables"]

    # ---- totals: sums over the queries every engine answered
    # (stock Ballista failing a query does not shrink the others' sums)
    core = [e for e in engines if not e.startswith("ballista")] or engines
    complete = [q for q in queries if all("median_ms" in results[q]["engines"].get(e, {}) for e in core)]
    totals = {e: (round(sum(results[q]["engines"][e]["median_ms"] for q in complete), 2)
                  if all("median_ms" in results[q]["engines"].get(e, {}) for q in complete) else None)
              for e in engines}
    ratio = (round(totals["tarn"] / totals["datafusion"], 3)
             if totals.get("tarn") and totals.get("datafusion") else None)

    cmd = command_line()
    out = pathlib.Path(args.out) if args.out else None
    payload = {
        "bench": "tpch", "sf": args.sf, "parts": parts, "runs": args.runs, "warmup": args.warmup,
        "vcores": args.vcores, "engines": labels, "data": data_info, "machine": machine(),
        "command": cmd, "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "queries": {f"q{q:02d}": results[q] for q in queries},
        "sum_of_medians_ms": totals, "sum_over": [f"q{q:02d}" for q in complete],
        "tarn_over_datafusion": ratio, "problems": problems,
    }
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n")
        path = out
    else:
        path = write_result(f"tpch-sf{sf_name(args.sf)}", payload)

    # ---- Markdown
    cols = [e for e in ("tarn", "tarn-staged", "tarn-spread", "tarn-azurite", "datafusion", "duckdb",
                        "ballista", "ballista-defaults")
            if e in labels]
    both = "tarn" in cols and "datafusion" in cols
    on_azurite = "tarn" in cols and "tarn-azurite" in cols
    head = ["query"]
    for e in cols:
        head.append(f"{labels[e]['label']} (ms)")
        if e == "tarn-azurite" and on_azurite:
            head.append("Azurite / local disk")
        if e == "datafusion" and both:
            head.append("Tarn / DataFusion")
    head.append("rows")
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for q in queries:
        r = results[q]["engines"]
        cells = [f"Q{q}"]
        for e in cols:
            v = r.get(e, {})
            cells.append(fmt_ms(v["median_ms"]) if "median_ms" in v else "**fails**")
            if e == "tarn-azurite" and on_azurite:
                a, b = v.get("median_ms"), r.get("tarn", {}).get("median_ms")
                cells.append(f"{a / b:.2f}×" if a and b else "—")
            if e == "datafusion" and both:
                a, b = r.get("tarn", {}).get("median_ms"), r.get("datafusion", {}).get("median_ms")
                cells.append(f"{a / b:.2f}×" if a and b else "—")
        rows = {v.get("rows") for v in r.values() if "rows" in v}
        cells.append(str(rows.pop()) if len(rows) == 1 else ("**mismatch**" if rows else "—"))
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**sum of medians**" + ("" if len(complete) == len(queries) else f" ({len(complete)} queries)")]
    for e in cols:
        cells.append(f"**{fmt_ms(totals[e])}**" if totals[e] is not None else "(fails some)")
        if e == "tarn-azurite" and on_azurite:
            a, b = totals.get("tarn-azurite"), totals.get("tarn")
            cells.append(f"**{a / b:.2f}×**" if a and b else "—")
        if e == "datafusion" and both:
            cells.append(f"**{ratio:.2f}×**" if ratio else "—")
    cells.append("")
    lines.append("| " + " | ".join(cells) + " |")

    print(f"\nTPC-H SF{sf_name(args.sf)}, {parts} Parquet files per table, median of {args.runs} runs "
          f"after {args.warmup} warm-up, {args.vcores} vCores / partitions / threads, "
          f"{machine()['cpus']} cores:\n")
    print("```sh\n" + cmd + "\n```\n")
    print("\n".join(lines))
    print(f"\nresults: {path}")
    if problems:
        print("\n" + "!" * 72)
        for p in problems:
            print("!! " + p)
        print("!" * 72)
        sys.exit(1)


if __name__ == "__main__":
    main()

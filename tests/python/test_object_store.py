"""Lakes on object storage, against real emulators the tests start:
Azurite (npm `azurite`) for Azure Blob Storage (`az://`) and moto's server
for S3 (`s3://`). `tarn demo` writes the demo lake into the store, a
`tarn standalone` serves it, and every answer is compared with the same
query over the local demo lake. The four write paths commit into the store
as Delta tables another Delta implementation (the `deltalake` package)
reads back, one commit each; writers racing on one table lose no rows."""

import concurrent.futures
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest
from tarn_provider import TarnError

from conftest import ROOT, TARN, free_port, mint, running

AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
MOTO = ROOT / ".venv" / "bin" / "moto_server"
# Azurite's documented development account.
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def wait_port(port, proc, what, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {limit}s")


def start_azurite(tmp):
    assert AZURITE.exists(), f"{AZURITE} missing: run dev/setup.sh --python"
    port = free_port()
    proc = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--location", str(tmp), "--silent", "--skipApiVersionCheck"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_port(port, proc, "azurite")
    from azure.storage.blob import BlobServiceClient
    endpoint = f"http://127.0.0.1:{port}/{AZ_ACCOUNT}"
    client = BlobServiceClient(account_url=endpoint, credential={"account_name": AZ_ACCOUNT, "account_key": AZ_KEY})
    client.create_container("lake")
    env = {"AZURE_STORAGE_ACCOUNT_NAME": AZ_ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": AZ_KEY,
           "AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{port}"}
    # What the `deltalake` package (delta-rs) needs to read the same tables.
    options = {"account_name": AZ_ACCOUNT, "account_key": AZ_KEY,
               "azure_storage_endpoint": endpoint, "allow_http": "true"}
    return "az://lake/tarn", env, options, proc


def start_moto(tmp):
    assert MOTO.exists(), f"{MOTO} missing: run dev/setup.sh --python"
    port = free_port()
    proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    wait_port(port, proc, "moto_server")
    import boto3
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="lake")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true"}
    options = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_region": "us-east-1",
               "aws_endpoint": endpoint, "aws_allow_http": "true", "aws_conditional_put": "etag"}
    return "s3://lake/tarn", env, options, proc


@pytest.fixture(scope="module", params=["azure", "s3"])
def remote(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    url, env, options, emulator = (start_azurite if request.param == "azure" else start_moto)(tmp)
    try:
        out = subprocess.run([str(TARN), "demo", "--lake", url], env=dict(os.environ, **env),
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        gen = running(url, ["--auth", "token"], env)
        info = next(gen)
        info.update(kind=request.param, url=url, options=options)
        yield info
        if "conn" in info:
            info["conn"].close()
        for _ in gen:
            pass
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=5)
        except subprocess.TimeoutExpired:
            # Azurite waits for idle keep-alive connections to close.
            emulator.kill()
            emulator.wait()


def connect(info, user="ana"):
    token = mint(info, user)
    return flight_sql.connect(info["uri"], db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
                              autocommit=True)


def sql(info, text, conn=None):
    """Runs `text` on `conn`, or on the module's one connection (a session
    and its lease each: a connection per statement would hold the pool's
    vCores until those sessions end)."""
    if conn is None:
        if "conn" not in info:
            info["conn"] = connect(info)
        conn = info["conn"]
    with conn.cursor() as cur:
        cur.execute(text)
        return cur.fetch_arrow_table()


def local(tarn, text):
    with flight_sql.connect(tarn["uri"]) as conn, conn.cursor() as cur:
        cur.execute(text)
        return cur.fetch_arrow_table()


READS = [
    "SELECT COUNT(*) AS n FROM demo.SigninLogs",
    "SELECT ResultType, COUNT(*) AS n FROM demo.SigninLogs GROUP BY ResultType ORDER BY ResultType",
    "SELECT s.UserPrincipalName, COUNT(*) AS n FROM demo.SigninLogs s "
    "JOIN demo.IdentityInfo i ON s.UserPrincipalName = i.AccountUPN "
    "WHERE s.ResultType <> '0' GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10",
    "SELECT MIN(TimeGenerated) AS first, MAX(TimeGenerated) AS last FROM demo.SigninLogs",
]


def test_the_demo_lake_reads_the_same_from_object_storage(remote, tarn):
    tables = {r["table_name"] for r in sql(remote, "SHOW TABLES").to_pylist() if r["table_schema"] == "demo"}
    assert {"SigninLogs", "IdentityInfo", "AuditLogs"} <= tables, tables
    for q in READS:
        assert sql(remote, q) == local(tarn, q), q


def delta_history(remote, table):
    import deltalake
    t = deltalake.DeltaTable(f"{remote['url']}/demo/{table}", storage_options=remote["options"])
    return t, [h["operation"] for h in reversed(t.history())]


def test_the_four_write_paths_commit_once_each_into_the_store(remote):
    name = f"Risky_{remote['kind']}_SPRK"
    failures = "FROM demo.SigninLogs WHERE ResultType <> '0'"
    expected = sql(remote, f"SELECT COUNT(DISTINCT UserPrincipalName) AS n {failures}").column("n")[0].as_py()
    # 1. CREATE TABLE … AS, partitioned.
    sql(remote, f"CREATE TABLE demo.{name} PARTITION BY (ResultType) AS "
                f"SELECT UserPrincipalName, ResultType, COUNT(*) AS n {failures} GROUP BY 1, 2")
    # 2. INSERT INTO (append) and 3. INSERT OVERWRITE.
    sql(remote, f"INSERT INTO demo.{name} SELECT UserPrincipalName, ResultType, COUNT(*) {failures} GROUP BY 1, 2")
    appended = sql(remote, f"SELECT COUNT(*) AS n FROM demo.{name}").column("n")[0].as_py()
    sql(remote, f"INSERT OVERWRITE demo.{name} SELECT UserPrincipalName, ResultType, COUNT(*) {failures} GROUP BY 1, 2")
    after = sql(remote, f"SELECT COUNT(*) AS n FROM demo.{name}").column("n")[0].as_py()
    assert appended == 2 * after and after >= expected > 0, (appended, after, expected)
    # 4. Flight SQL bulk ingest, created then appended.
    ingested = f"Ingested_{remote['kind']}_SPRK"
    rows = pa.table({"id": list(range(1000)), "who": [f"u{i % 7}" for i in range(1000)]})
    with connect(remote) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest(ingested, rows, mode="create", db_schema_name="demo") == 1000
        assert cur.adbc_ingest(ingested, rows.slice(0, 10), mode="append", db_schema_name="demo") == 10
    assert sql(remote, f"SELECT COUNT(*) AS n FROM demo.{ingested}").column("n")[0].as_py() == 1010

    # What landed in the store is Delta another implementation reads: one
    # commit per write, the same rows.
    t, ops = delta_history(remote, name)
    assert len(ops) == 3, ops
    assert t.to_pyarrow_table().num_rows == after
    t, ops = delta_history(remote, ingested)
    assert len(ops) == 2 and t.to_pyarrow_table().num_rows == 1010, ops

    # DROP TABLE removes it from the store.
    sql(remote, f"DROP TABLE demo.{ingested}")
    tables = {r["table_name"] for r in sql(remote, "SHOW TABLES").to_pylist()}
    assert ingested not in tables and name in tables


def race(remote, statements):
    """Runs each writer's statement at once, each on its own connection:
    [(writer, None or its error)]. A refused write must say why, with
    WRITE_CONFLICT's code; at least one must win."""
    def run(item):
        w, text = item
        try:
            with connect(remote) as conn:
                sql(remote, text, conn)
            return w, None
        except Exception as e:  # noqa: BLE001 - checked below
            return w, TarnError.parse(e) or e

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(statements)) as pool:
        results = list(pool.map(run, statements.items()))
    for w, err in results:
        assert err is None or (isinstance(err, TarnError) and err.code == 2605), (w, err)
    assert any(err is None for _, err in results), results
    return results


def test_writers_racing_on_one_table_lose_no_rows(remote):
    name = f"Race_{remote['kind']}_SPRK"
    sql(remote, f"CREATE TABLE demo.{name} AS SELECT 0 AS writer, 0 AS k")

    results = race(remote, {w: f"INSERT INTO demo.{name} SELECT {w} AS writer, 1 AS k FROM demo.SigninLogs "
                               f"LIMIT {100 * w}" for w in range(1, 7)})
    done = [w for w, err in results if err is None]
    refused = [(w, err) for w, err in results if err is not None]
    got = sql(remote, f"SELECT writer, COUNT(*) AS n FROM demo.{name} GROUP BY writer ORDER BY writer").to_pylist()
    assert got == [{"writer": 0, "n": 1}] + [{"writer": w, "n": 100 * w} for w in done], (got, refused)
    _, ops = delta_history(remote, name)
    assert len(ops) == 1 + len(done), (ops, done)


def test_overwrites_racing_on_one_table_leave_exactly_one_winner(remote):
    """An overwrite reads the table it replaces: two racing for the same
    version cannot both win. Each one either commits or is refused with
    WRITE_CONFLICT; the table then holds exactly one writer's rows, never a
    mix, and the log has one commit per winner."""
    name = f"Swap_{remote['kind']}_SPRK"
    sql(remote, f"CREATE TABLE demo.{name} AS SELECT 0 AS writer FROM demo.SigninLogs LIMIT 5")

    results = race(remote, {w: f"INSERT OVERWRITE demo.{name} SELECT {w} AS writer FROM demo.SigninLogs "
                               f"LIMIT {10 * w}" for w in range(1, 5)})
    won = [w for w, err in results if err is None]
    got = sql(remote, f"SELECT writer, COUNT(*) AS n FROM demo.{name} GROUP BY writer").to_pylist()
    assert len(got) == 1 and got[0]["writer"] in won and got[0]["n"] == 10 * got[0]["writer"], (got, results)
    _, ops = delta_history(remote, name)
    assert len(ops) == 1 + len(won), (ops, results)


def test_sql_cannot_name_another_place_in_the_store(remote):
    for text in [f"SELECT * FROM '{remote['url']}/demo/SigninLogs'",
                 "SELECT * FROM 'az://lake/elsewhere/x.parquet'",
                 "SELECT * FROM 's3://lake/elsewhere/x.parquet'"]:
        with pytest.raises(Exception) as e:
            sql(remote, text)
        err = TarnError.parse(e.value)
        assert err is not None and err.code == 2206, (text, e.value)

"""Lake semantics with real clients: the provider workflow, every write
rule with its code, roles per workspace, the SQL sandbox, and writes that
lose nothing when the process dies under them."""

import os
import signal
import subprocess
import threading
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest
from tarn_provider import TarnError, TarnProvider

from conftest import TARN, mint, start
from jupyter_client_util import Kernel, http


def provider(info, user="ana", roles=("*=owner",), operator=False):
    return TarnProvider(info["uri"], token=mint(info, user, roles=roles, operator=operator), database="demo")


def connect(info, token):
    return flight_sql.connect(info["uri"], db_kwargs={
        adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}, autocommit=True)


def sql(info, token, text):
    with connect(info, token) as conn, conn.cursor() as cur:
        cur.execute(text)
        return cur.fetchall()


def code_of(fn):
    with pytest.raises(Exception) as e:
        fn()
    err = e.value if isinstance(e.value, TarnError) else TarnError.parse(e.value)
    assert err is not None, f"no Tarn error code in: {e.value}"
    return err


def test_the_provider_workflow_end_to_end(writable):
    p = provider(writable)
    assert {"demo", "hr"} <= set(p.list_databases())
    assert "SigninLogs" in p.list_tables("demo")
    signins = p.read_table("SigninLogs", "demo")
    assert signins.num_rows > 1000 and "UserPrincipalName" in signins.columns

    # Summarise, save partitioned, append, read back, overwrite, delete.
    per_user = pa.table({
        "UserPrincipalName": ["a@x", "b@x", "c@x"],
        "Failures": pa.array([3, 0, 7], pa.int64()),
        "Country": ["NL", "US", "NL"],
    })
    run = p.save_as_table(per_user, "Risky_SPRK", "demo",
                          write_options={"mode": "append", "partitionBy": ["Country"]})
    assert run.startswith("tarn-save-")
    assert "Risky_SPRK" in p.list_tables("demo")
    p.save_as_table(per_user, "Risky_SPRK", "demo")  # default mode: append
    back = p.read_table("Risky_SPRK", "demo")
    assert back.num_rows == 6 and sum(back.column("Failures").to_pylist()) == 20
    assert (writable["lake"] / "demo" / "Risky_SPRK" / "Country=NL").is_dir()
    p.save_as_table(per_user.slice(0, 1), "Risky_SPRK", "demo", write_options={"mode": "overwrite"})
    assert p.read_table("Risky_SPRK", "demo").to_pylist() == [
        {"UserPrincipalName": "a@x", "Failures": 3, "Country": "NL"}]
    # The analytics tier takes appends (pandas frames too, when installed).
    try:
        import pandas as pd
        frame = pd.DataFrame
    except ImportError:
        frame = pa.table
    p.save_as_table(frame({"Alert": ["spray"], "Score": [0.9]}), "Alerts_SPRK_CL", "demo")
    p.save_as_table(frame({"Alert": ["travel"], "Score": [0.4]}), "Alerts_SPRK_CL", "demo")
    assert sorted(p.read_table("Alerts_SPRK_CL").column("Alert").to_pylist()) == ["spray", "travel"]
    p.delete_table("Risky_SPRK", "demo")
    assert "Risky_SPRK" not in p.list_tables("demo")
    assert not (writable["lake"] / "demo" / "Risky_SPRK").exists()


def test_sql_writes_commit_once_each(writable):
    token = mint(writable, "sam")
    assert sql(writable, token, "CREATE TABLE demo.Fails_SPRK AS SELECT UserPrincipalName, count(*) AS n "
                                "FROM demo.SigninLogs WHERE ResultType <> '0' GROUP BY UserPrincipalName")[0][0] > 0
    before = sql(writable, token, "SELECT count(*), sum(n) FROM demo.Fails_SPRK")[0]
    sql(writable, token, "INSERT INTO demo.Fails_SPRK SELECT * FROM demo.Fails_SPRK")
    assert sql(writable, token, "SELECT count(*), sum(n) FROM demo.Fails_SPRK")[0] == (before[0] * 2, before[1] * 2)
    assert sql(writable, token, "INSERT OVERWRITE demo.Fails_SPRK VALUES ('z@x', 1)")[0][0] == 1
    assert sql(writable, token, "SELECT * FROM demo.Fails_SPRK") == [("z@x", 1)]
    log = writable["lake"] / "demo" / "Fails_SPRK" / "_delta_log"
    assert len(list(log.glob("*.json"))) == 3  # create, insert, overwrite
    assert not list((writable["lake"] / "demo" / "Fails_SPRK").glob("_tarn_txn/*/*"))
    # Bulk ingest through ADBC itself, in its own modes.
    with connect(writable, token) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("Ingested_SPRK", pa.table({"x": [1, 2]}), mode="create", db_schema_name="demo") == 2
        assert cur.adbc_ingest("Ingested_SPRK", pa.table({"x": [3]}), mode="append", db_schema_name="demo") == 1
        err = code_of(lambda: cur.adbc_ingest("Ingested_SPRK", pa.table({"x": [4]}), mode="create",
                                              db_schema_name="demo"))
        assert err.code == 2102
    assert sorted(r[0] for r in sql(writable, token, "SELECT x FROM demo.Ingested_SPRK")) == [1, 2, 3]


def table_state(p, name):
    t = p.read_table(name)
    return t.num_rows, sorted(map(str, t.to_pylist()))


def test_every_rule_refuses_with_its_code_and_changes_nothing(writable):
    p = provider(writable)
    token = mint(writable, "rita")
    p.save_as_table(pa.table({"a": pa.array([1], pa.int64()), "b": ["x"]}), "Rules_SPRK",
                    write_options={"mode": "overwrite"})
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
    p.save_as_table(pa.table({"id": [1], "v": ["x"]}, schema=strict), "Strict_SPRK")
    p.save_as_table(pa.table({"a": [1]}), "Append_SPRK_CL")
    signins_before = p.read_table("SigninLogs").num_rows
    rules_before = table_state(p, "Rules_SPRK")
    df = pa.table({"a": pa.array([2], pa.int64()), "b": ["y"]})

    cases = [
        (2603, "_SPRK", lambda: p.save_as_table(df, "Custom")),
        (2603, "_SPRK_CL", lambda: p.save_as_table(df, "Custom_CL")),
        (2603, "_SPRK", lambda: sql(writable, token, "CREATE TABLE demo.NoSuffix AS SELECT 1 AS a")),
        (2604, "system table", lambda: p.save_as_table(df, "SigninLogs")),
        (2604, "system table", lambda: sql(writable, token, "INSERT INTO demo.SigninLogs SELECT * FROM demo.SigninLogs LIMIT 1")),
        (2601, "mode", lambda: p.save_as_table(df, "Rules_SPRK", write_options={"partitionBy": []})),
        (2601, "upsert", lambda: p.save_as_table(df, "Rules_SPRK", write_options={"mode": "upsert"})),
        (2601, "append-only", lambda: p.save_as_table(pa.table({"a": [2]}), "Append_SPRK_CL", write_options={"mode": "overwrite"})),
        (2602, "analytics tier", lambda: p.save_as_table(df, "New_SPRK_CL", write_options={"mode": "append", "partitionBy": ["a"]})),
        (2602, "nope", lambda: p.save_as_table(df, "New_SPRK", write_options={"mode": "append", "partitionBy": ["nope"]})),
        (2401, "'b'", lambda: p.save_as_table(pa.table({"a": pa.array([2], pa.int64())}), "Rules_SPRK")),
        (2401, "'c'", lambda: p.save_as_table(pa.table({"a": pa.array([2], pa.int64()), "b": ["y"], "c": [1]}), "Rules_SPRK")),
        (2402, "'a'", lambda: p.save_as_table(pa.table({"a": ["two"], "b": ["y"]}), "Rules_SPRK")),
        (2403, "'id'", lambda: p.save_as_table(pa.table({"id": [2], "v": ["y"]}), "Strict_SPRK")),
        (2404, "a b", lambda: p.save_as_table(pa.table({"a b": [1]}), "Spaces_SPRK")),
        (2604, "analytics tier", lambda: p.delete_table("Append_SPRK_CL")),
        (2604, "system table", lambda: p.delete_table("SigninLogs")),
        (2100, "Missing_SPRK", lambda: p.read_table("Missing_SPRK")),
        (2100, "Missing_SPRK", lambda: sql(writable, token, "INSERT INTO demo.Missing_SPRK VALUES (1)")),
        (2001, "nowhere", lambda: p.read_table("SigninLogs", "nowhere")),
        (2102, "exists", lambda: sql(writable, token, "CREATE TABLE demo.Rules_SPRK AS SELECT 1 AS a, 'b' AS b")),
        (2805, "write_options", lambda: p.save_as_table(df, "Rules_SPRK", write_options="append")),
    ]
    for code, words, call in cases:
        err = code_of(call)
        assert err.code == code, (code, words, str(err))
        assert words in str(err), (words, str(err))
        assert err.fix, f"no fix in {err}"

    assert table_state(p, "Rules_SPRK") == rules_before
    assert p.read_table("SigninLogs").num_rows == signins_before
    for never in ["Custom", "Custom_CL", "NoSuffix", "New_SPRK_CL", "New_SPRK", "Spaces_SPRK"]:
        assert never not in p.list_tables()
        assert not (writable["lake"] / "demo" / never).exists()
    assert table_state(p, "Strict_SPRK") == (1, ["{'id': 1, 'v': 'x'}"])


def test_the_same_refusals_reach_a_notebook_kernel(writable):
    token = mint(writable, "kim")
    status, k, _ = http("POST", f"{writable['http']}/api/kernels", {"name": "tarn-sql"}, token)
    assert status == 201
    ws = Kernel(writable["http"], k["id"], token)
    try:
        reply, _ = ws.execute("CREATE TABLE demo.Notebook AS SELECT 1 AS a")
        assert reply["status"] == "error" and reply["ename"] == "TARN-2603 MISSING_TABLE_SUFFIX", reply
        reply, _ = ws.execute("INSERT INTO demo.SigninLogs SELECT * FROM demo.SigninLogs LIMIT 1")
        assert reply["ename"] == "TARN-2604 INVALID_WRITE", reply
        reply, msgs = ws.execute("CREATE TABLE demo.Notebook_SPRK AS SELECT 1 AS a; SELECT count(*) AS n FROM demo.Notebook_SPRK")
        assert reply["status"] == "ok", reply
    finally:
        ws.close()
        http("DELETE", f"{writable['http']}/api/kernels/{k['id']}", token=token)


def test_roles_gate_reads_writes_and_deletes_per_workspace(writable):
    owner = provider(writable, "olga")
    owner.save_as_table(pa.table({"a": [1]}), "Shared_SPRK", "demo")

    reader = provider(writable, "rudi", roles=("demo=reader",))
    assert reader.list_databases() == ["demo"]  # hr is invisible
    assert reader.read_table("Shared_SPRK").num_rows == 1
    err = code_of(lambda: reader.save_as_table(pa.table({"a": [2]}), "Shared_SPRK"))
    assert err.code == 2203 and "contributor" in err.message
    err = code_of(lambda: reader.read_table("Salaries", "hr"))
    assert err.code == 2001 and "reader" in err.message
    rtoken = mint(writable, "rudi", roles=("demo=reader",))
    for text in ["SELECT * FROM hr.Salaries", "SELECT * FROM tarn.hr.Salaries",
                 "SELECT count(*) FROM demo.SigninLogs s JOIN hr.Salaries x ON true"]:
        assert code_of(lambda: sql(writable, rtoken, text)).code == 2001, text
    schemas = [r[0] for r in sql(writable, rtoken, "SELECT DISTINCT table_schema FROM information_schema.tables")]
    assert "hr" not in schemas and "demo" in schemas

    contributor = provider(writable, "carl", roles=("demo=contributor", "hr=reader"))
    contributor.save_as_table(pa.table({"a": [2]}), "Shared_SPRK", "demo")
    assert contributor.read_table("Salaries", "hr").num_rows > 0
    err = code_of(lambda: contributor.save_as_table(pa.table({"a": [2]}), "Mine_SPRK", "hr"))
    assert err.code == 2203 and "contributor" in err.message
    err = code_of(lambda: contributor.delete_table("Shared_SPRK", "demo"))
    assert err.code == 2203 and "owner" in err.message
    assert owner.read_table("Shared_SPRK").num_rows == 2
    owner.delete_table("Shared_SPRK", "demo")

    # `tarn token` refuses to mint a token that can do nothing.
    out = subprocess.run([str(TARN), "token", "--key-file", writable["key"], "--user", "nobody"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "--role" in out.stderr


def test_sql_cannot_reach_outside_the_lake(writable, tmp_path):
    token = mint(writable, "eve")
    p = provider(writable, "eve")
    # A real Delta table outside the lake, and symlinks to it inside.
    outside = tmp_path / "outside"
    p.save_as_table(pa.table({"secret": ["s3cr3t"]}), "Bait_SPRK")
    bait = writable["lake"] / "demo" / "Bait_SPRK"
    os.rename(bait, outside)
    os.symlink(outside, writable["lake"] / "demo" / "Escape_SPRK")
    os.symlink(tmp_path, writable["lake"] / "elsewhere")
    try:
        # Each probe has one right answer: a path where a table name goes,
        # a location, a file sink or a symlink out of the lake is 2206; a
        # file-reading table function is not offered at all (2803).
        attempts = {
            "SELECT * FROM '/etc/passwd'": 2206,
            "SELECT * FROM 'file:///etc/passwd'": 2206,
            "SELECT * FROM '../../etc/passwd'": 2206,
            "SELECT * FROM 'demo/SigninLogs'": 2206,
            "SELECT * FROM \"../demo/SigninLogs\"": 2206,
            "SELECT * FROM demo.\"../../etc\"": 2206,
            "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'": 2206,
            "CREATE TABLE leak_SPRK (a INT) LOCATION '/tmp/leak'": 2206,
            "COPY (SELECT * FROM demo.SigninLogs) TO '/tmp/tarn-leak.csv'": 2206,
            "COPY demo.SigninLogs TO 'file:///tmp/tarn-leak.parquet'": 2206,
            "INSERT INTO '/tmp/tarn-leak.csv' VALUES (1)": 2206,
            "SELECT * FROM read_csv('/etc/passwd')": 2803,
            "SELECT * FROM demo.Escape_SPRK": 2206,
            "SELECT * FROM elsewhere.outside": 2206,
        }
        got = {text: code_of(lambda: sql(writable, token, text)) for text in attempts}
        for text, err in got.items():
            assert "s3cr3t" not in str(err) and "root:" not in str(err), (text, str(err))
        assert {t: e.code for t, e in got.items()} == attempts, {t: str(e) for t, e in got.items()}
        assert code_of(lambda: sql(writable, token, "SELECT * FROM demo.Escape_SPRK")).code == 2206
        assert code_of(lambda: sql(writable, token, "COPY (SELECT 1) TO '/tmp/x.csv'")).code == 2206
        assert not os.path.exists("/tmp/tarn-leak.csv") and not os.path.exists("/tmp/tarn-leak.parquet")
        # Operators are not sandboxed, but Tarn does not run file writes yet.
        op = mint(writable, "root", roles=(), operator=True)
        assert code_of(lambda: sql(writable, op, "COPY (SELECT 1) TO '/tmp/x.csv'")).code == 2803
    finally:
        os.unlink(writable["lake"] / "demo" / "Escape_SPRK")
        os.unlink(writable["lake"] / "elsewhere")


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_all(proc):
    for c in children(proc.pid):
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.wait()


# Large enough that the kill reliably lands while the overwrite writes (the
# test asserts it did): 32 copies of SigninLogs, ~630k rows.
BIG = "SELECT s.* FROM demo.SigninLogs s CROSS JOIN (SELECT value FROM generate_series(1, 32)) k"


@pytest.mark.parametrize("victim", ["executor", "standalone"])
def test_an_interrupted_overwrite_leaves_the_old_or_the_new_version(lake, tmp_path, victim):
    """Kill the interactive executor, or the whole standalone, while a large
    overwrite is writing its files: after a restart the table reads as the
    old version or the new one, never a mix, and still takes writes."""
    import shutil
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy, symlinks=True)
    txn = copy / "demo" / "Big_SPRK" / "_tarn_txn"
    proc, info = start(copy, last=True)
    try:
        token = mint(info, "ops")
        sql(info, token, "CREATE TABLE demo.Big_SPRK AS SELECT 1 AS gen, * FROM demo.SigninLogs")
        old = sql(info, token, "SELECT count(*) FROM demo.Big_SPRK")[0][0]
        new = sql(info, token, f"SELECT count(*) FROM ({BIG})")[0][0]
        result = []

        def overwrite():
            try:
                result.append(sql(info, token, f"INSERT OVERWRITE demo.Big_SPRK SELECT 2 AS gen, * FROM ({BIG})"))
            except Exception as e:  # noqa: BLE001 - the failure is the point
                result.append(e)

        t = threading.Thread(target=overwrite)
        t.start()
        deadline = time.time() + 60
        while time.time() < deadline and not (txn.exists() and any(txn.iterdir())) and t.is_alive():
            time.sleep(0.005)
        # The kill must land while the write is in flight, or this test
        # proves nothing: the writer is still waiting for its answer and its
        # tasks have staged files.
        staged = txn.exists() and any(txn.iterdir())
        assert t.is_alive() and staged, (
            f"the overwrite was not in flight at the kill (writer alive: {t.is_alive()}, "
            f"staged files: {staged}, result: {result})"
        )
        if victim == "executor":
            for c in children(proc.pid):
                if "--pool interactive" in cmdline(c):
                    os.kill(c, signal.SIGKILL)
            t.join(120)
        kill_all(proc)
        t.join(120)
    finally:
        if proc.poll() is None:
            kill_all(proc)

    proc, info = start(copy, last=True)
    try:
        token = mint(info, "ops")
        count, gens, gen = sql(info, token, "SELECT count(*), count(DISTINCT gen), min(gen) FROM demo.Big_SPRK")[0]
        assert gens == 1, "the table mixes two versions"
        assert (count, gen) in [(old, 1), (new, 2)], (count, gen, old, new, result)
        sql(info, token, "INSERT INTO demo.Big_SPRK SELECT 3 AS gen, * FROM demo.SigninLogs LIMIT 5")
        assert sql(info, token, "SELECT count(*) FROM demo.Big_SPRK WHERE gen = 3")[0][0] == 5
    finally:
        kill_all(proc)


def test_lazy_frames_run_on_the_cluster_and_equal_the_same_sql(writable):
    """Frames compose without moving rows; what they return equals the
    same SQL over ADBC; saving one is a write by the cluster."""
    from tarn_provider import F, col, lit

    token = mint(writable, "frames", roles=["demo=owner"])
    p = TarnProvider(writable["uri"], token=token, database="demo")
    s = p.read_table("SigninLogs", "demo")
    assert "<Frame (lazy)" in repr(s)

    top = (s.filter(col("ResultType") != "0")
            .group_by("UserPrincipalName")
            .agg(failures=F.count(), ips=F.count_distinct("IPAddress"))
            .sort(col("failures").desc(), col("UserPrincipalName"))
            .limit(5))
    want = sql(writable, token,
               "SELECT UserPrincipalName, COUNT(*) AS failures, COUNT(DISTINCT IPAddress) AS ips "
               "FROM demo.SigninLogs WHERE ResultType <> '0' GROUP BY UserPrincipalName "
               "ORDER BY failures DESC, UserPrincipalName LIMIT 5")
    assert [tuple(r.values()) for r in top.to_pylist()] == [tuple(r) for r in want]
    assert [tuple(r.values()) for r in top] == [tuple(r) for r in want]   # iteration
    assert top.count() == 5
    assert "Aggregate" in top.explain() or "aggr" in top.explain().lower()

    # A join, a derived column and a window function.
    ident = p.read_table("IdentityInfo", "demo").select(col("AccountUPN").alias("UserPrincipalName"), "Department")
    by_dept = (s.join(ident, on="UserPrincipalName")
                .with_column("failed", "CASE WHEN ResultType <> '0' THEN 1 ELSE 0 END")
                .group_by("Department").agg(failed=F.sum("failed"), total=F.count())
                .with_column("rank", F.rank().over(order_by=col("failed").desc()))
                .sort("Department"))
    want = sql(writable, token,
               "SELECT i.Department, SUM(CASE WHEN s.ResultType <> '0' THEN 1 ELSE 0 END) AS failed, COUNT(*) AS total "
               "FROM demo.SigninLogs s JOIN demo.IdentityInfo i ON s.UserPrincipalName = i.AccountUPN "
               "GROUP BY i.Department ORDER BY i.Department")
    got = by_dept.to_pylist()
    assert [(r["Department"], r["failed"], r["total"]) for r in got] == [tuple(r) for r in want]
    worst = max(want, key=lambda r: r[1])[0]
    assert next(r["rank"] for r in got if r["Department"] == worst) == 1

    # Values are quoted, never pasted: a quote in a value is just a value.
    assert s.filter(col("UserPrincipalName") == lit("x' OR '1'='1")).count() == 0

    # Saving a frame writes on the cluster: CREATE TABLE … AS, then appends.
    p.save_as_table(top, "TopFailures_SPRK", "demo")
    p.save_as_table(top.limit(2), "TopFailures_SPRK", "demo")
    assert p.read_table("TopFailures_SPRK", "demo").count() == 7
    p.save_as_table(top.limit(1), "TopFailures_SPRK", "demo", write_options={"mode": "overwrite"})
    assert p.read_table("TopFailures_SPRK", "demo").count() == 1

    # A frame over a table the user may not read is refused with its code.
    err = code_of(lambda: p.read_table("Salaries", "hr"))
    assert err.code == 2001, err

"""Tarn through the real ADBC Flight SQL driver, checked against DuckDB
reading the same Delta tables through the `deltalake` package."""

import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

warnings.filterwarnings("ignore", message="Cannot disable autocommit")


def connect(tarn, **kwargs):
    return flight_sql.connect(tarn["uri"], **kwargs)


def independent(lake, sql, tables):
    """Runs `sql` in DuckDB over the Delta tables read by `deltalake`."""
    con = duckdb.connect()
    for t in tables:
        con.register(t, DeltaTable(str(lake / "demo" / t)).to_pyarrow_table())
    return con.execute(sql).fetchall()


THREE_WAY = """
SELECT i.Department,
       COUNT(DISTINCT s.UserPrincipalName) AS users,
       COUNT(*) AS failed_signins,
       SUM(e.logons) AS logons
FROM SigninLogs s
JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN
JOIN (SELECT TargetUserName, COUNT(*) AS logons
      FROM SecurityEvent WHERE EventID = 4624 GROUP BY TargetUserName) e
  ON e.TargetUserName = i.AccountName
WHERE s.ResultType <> '0'
GROUP BY i.Department
ORDER BY i.Department
"""


def test_three_table_join_matches_duckdb(tarn):
    with connect(tarn) as conn, conn.cursor() as cur:
        cur.execute(THREE_WAY)
        got = [tuple(r) for r in cur.fetchall()]
    expected = independent(tarn["lake"], THREE_WAY, ["SigninLogs", "IdentityInfo", "SecurityEvent"])
    assert len(got) > 1
    assert got == [tuple(r) for r in expected]


def test_counts_and_arrow_results(tarn):
    with connect(tarn) as conn, conn.cursor() as cur:
        for table in ["SigninLogs", "SecurityEvent", "AuditLogs", "DeviceNetworkEvents", "IdentityInfo"]:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            (n,) = cur.fetchone()
            assert n == DeltaTable(str(tarn["lake"] / "demo" / table)).to_pyarrow_table().num_rows
        cur.execute("SELECT TimeGenerated, UserPrincipalName, IPAddress FROM SigninLogs ORDER BY TimeGenerated LIMIT 100")
        table = cur.fetch_arrow_table()
        assert table.num_rows == 100
        assert table.schema.field("TimeGenerated").type == pa.timestamp("us", tz="UTC")


def test_parameters(tarn):
    with connect(tarn) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM SigninLogs WHERE UserPrincipalName = ? AND ResultType = ?",
                    parameters=("megan.bowen@contoso.com", "50126"))
        (n,) = cur.fetchone()
    expected = independent(
        tarn["lake"],
        "SELECT COUNT(*) FROM SigninLogs WHERE UserPrincipalName = 'megan.bowen@contoso.com' AND ResultType = '50126'",
        ["SigninLogs"],
    )[0][0]
    assert n == expected and n >= 30  # the planted brute force


def test_metadata(tarn):
    with connect(tarn) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        catalogs = {o["catalog_name"]: o for o in objects}
        assert set(catalogs) == {"tarn"}
        schemas = {s["db_schema_name"]: s for s in catalogs["tarn"]["catalog_db_schemas"]}
        assert "demo" in schemas
        tables = {t["table_name"] for t in schemas["demo"]["db_schema_tables"]}
        assert {"SigninLogs", "SecurityEvent", "AuditLogs", "DeviceNetworkEvents", "IdentityInfo"} <= tables
        schema = conn.adbc_get_table_schema("SigninLogs", catalog_filter="tarn", db_schema_filter="demo")
        assert "UserPrincipalName" in schema.names
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Tarn"


def test_errors_are_coded(tarn):
    with connect(tarn) as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.ProgrammingError) as e:
            cur.execute("SELECT * FROM NoSuchTable")
        assert "TARN-2100" in str(e.value) and "NoSuchTable" in str(e.value)
        with pytest.raises(flight_sql.ProgrammingError) as e:
            cur.execute("SELECT * FROM ghost.SigninLogs")
        assert "TARN-2001" in str(e.value)
        with pytest.raises(flight_sql.Error) as e:
            cur.execute("COPY (SELECT 1) TO '/tmp/tarn-py-escape.csv'")
        assert "TARN-2206" in str(e.value)
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_basic_auth_handshake_opens_a_session(tarn):
    with connect(tarn, db_kwargs={"username": "analyst", "password": "dev"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM AuditLogs")
        assert cur.fetchone()[0] > 0


def test_a_query_can_be_followed_through_every_roles_log(tarn):
    """The gateway's run id is the query's id in every role's log: the
    gateway's end-of-query line, the coordinator's reservation and the
    executor's run all carry it."""
    import re
    import time
    with open(tarn["log"], "rb") as f:
        f.seek(0, 2)
        start = f.tell()
    with flight_sql.connect(tarn["uri"], db_kwargs={"username": "tracer", "password": "x"}) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM SigninLogs WHERE ResultType <> '0'")
        assert cur.fetchone()[0] > 0
    deadline, run_id = time.monotonic() + 10, None
    while run_id is None and time.monotonic() < deadline:
        time.sleep(0.1)
        with open(tarn["log"], "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        ids = re.findall(r"run_id=(tarn-[0-9a-f]+) user=tracer", text)
        run_id = ids[0] if ids else None
    assert run_id, text[-3000:]
    lines = [l for l in text.splitlines() if run_id in l]
    roles = {role for l in lines for role in ("tarn_gateway", "tarn_coordinator", "tarn_executor") if role in l}
    assert roles == {"tarn_gateway", "tarn_coordinator", "tarn_executor"}, "\n".join(lines)

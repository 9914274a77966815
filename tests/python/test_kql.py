"""KQL through every door a SQL statement goes through: ADBC with the
`x-tarn-language` header (statements and prepared statements), the
`tarn-kql` kernel and the `%%kql` / `%kql` magics of the SQL and Python
kernels, `tarn kql`, and jobs whose work is KQL. Each KQL answer is checked
against the same question asked in SQL."""

import json
import subprocess
import warnings

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import TARN, mint
from jupyter_client_util import Kernel, http, of_type

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

LANGUAGE = "adbc.flight.sql.rpc.call_header.x-tarn-language"

BY_RESULT_KQL = "SigninLogs | summarize count() by ResultType"
BY_RESULT_SQL = "SELECT ResultType, COUNT(*) FROM SigninLogs GROUP BY ResultType"
FAILED_KQL = 'SigninLogs | where ResultType != "0" | project UserPrincipalName, IPAddress'
FAILED_SQL = "SELECT UserPrincipalName, IPAddress FROM SigninLogs WHERE ResultType <> '0'"


def sql_rows(info, sql, token=None):
    kwargs = {}
    if token:
        kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    with flight_sql.connect(info["uri"], db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return sorted(tuple(r) for r in cur.fetchall())


def security_events(info, token=None):
    return sql_rows(info, "SELECT COUNT(*) FROM SecurityEvent", token)[0][0]


def kql_connection(info, language="kql"):
    return flight_sql.connect(info["uri"], db_kwargs={LANGUAGE: language}, autocommit=True)


def only_value(rows):
    """The one value of a one-row, one-column result (as a list of dicts)."""
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return next(iter(rows[0].values()))


# --- Flight SQL (ADBC) ----------------------------------------------------

def test_adbc_with_the_language_header_runs_kql_as_its_sql_form_answers(tarn):
    with kql_connection(tarn) as conn, conn.cursor() as cur:
        cur.execute(BY_RESULT_KQL)
        by_result = sorted(tuple(r) for r in cur.fetchall())
        cur.execute(FAILED_KQL)
        failed = cur.fetch_arrow_table()
        cur.execute("SecurityEvent | count")
        (count,) = cur.fetchone()
        cur.execute("SigninLogs | take 3")
        assert len(cur.fetchall()) == 3
    assert len(by_result) > 1
    assert by_result == sql_rows(tarn, BY_RESULT_SQL)
    assert failed.column_names == ["UserPrincipalName", "IPAddress"]
    assert sorted(zip(*(c.to_pylist() for c in failed.columns))) == sql_rows(tarn, FAILED_SQL)
    assert count == security_events(tarn)
    # Without the header (or with `sql`) the same connection speaks SQL.
    with kql_connection(tarn, "SQL") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetchone() == (1,)


def test_the_header_can_be_set_per_statement(tarn):
    with flight_sql.connect(tarn["uri"], autocommit=True) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{LANGUAGE: "kql"})
        cur.execute("SecurityEvent | count")
        assert cur.fetchone()[0] == security_events(tarn)


def test_a_prepared_kql_statement_runs_in_kql_every_time(tarn):
    with kql_connection(tarn) as conn, conn.cursor() as cur:
        # CreatePreparedStatement plans it as KQL: its result schema is known.
        cur.adbc_prepare(BY_RESULT_KQL)
        for _ in range(2):
            cur.execute(BY_RESULT_KQL)
            assert sorted(tuple(r) for r in cur.fetchall()) == sql_rows(tarn, BY_RESULT_SQL)
        # KQL has no placeholders: bound parameters are refused, clearly.
        with pytest.raises(flight_sql.Error) as e:
            cur.execute("SigninLogs | take 1", parameters=("x",))
        text = str(e.value)
        assert "TARN-2805 INVALID_ARGUMENT" in text and "KQL" in text and "parameters" in text, text


def test_an_unknown_language_is_refused_naming_it(tarn):
    with kql_connection(tarn, "cobol") as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.Error) as e:
            cur.execute("SELECT 1")
    text = str(e.value)
    assert "TARN-2805 INVALID_ARGUMENT" in text and "'cobol'" in text and "x-tarn-language" in text, text


def test_a_kql_syntax_error_carries_its_code_line_and_column(tarn):
    with kql_connection(tarn) as conn, conn.cursor() as cur:
        with pytest.raises(flight_sql.Error) as e:
            cur.execute('SigninLogs\n| where ResultType == "0"\n| projekt UserPrincipalName')
        text = str(e.value)
        assert "TARN-2810 KQL_SYNTAX" in text, text
        assert "line 3" in text and "column" in text and "^" in text, text
        # The session is unharmed.
        cur.execute("SecurityEvent | count")
        assert cur.fetchone()[0] == security_events(tarn)


# --- Kernels --------------------------------------------------------------

def start_kernel(tarn, name):
    status, k, _ = http("POST", f"{tarn['http']}/api/kernels", {"name": name})
    assert status == 201, k
    assert k["name"] == name
    return k


def result_rows(msgs):
    """The rows of a cell's execute_result (its data resource)."""
    last = of_type(msgs, "execute_result")
    assert last, [m["msg_type"] for m in msgs]
    return last[0]["content"]["data"]["application/vnd.dataresource+json"]["data"]


def test_the_tarn_kql_kernel_runs_kql_cells(tarn):
    status, specs, _ = http("GET", f"{tarn['http']}/api/kernelspecs")
    assert status == 200
    spec = specs["kernelspecs"]["tarn-kql"]["spec"]
    assert spec["display_name"] == "Tarn KQL" and spec["language"] == "kql"
    k = start_kernel(tarn, "tarn-kql")
    ws = Kernel(tarn["http"], k["id"])
    try:
        mid = ws.send("kernel_info_request", {})
        info = ws.until("kernel_info_reply", mid)[-1]["content"]
        assert info["language_info"]["name"] == "kql" and info["language_info"]["file_extension"] == ".kql"

        reply, msgs = ws.execute("SecurityEvent\n| count")
        assert reply["status"] == "ok", msgs
        assert only_value(result_rows(msgs)) == security_events(tarn)

        reply, msgs = ws.execute(BY_RESULT_KQL)
        assert reply["status"] == "ok", msgs
        got = sorted(tuple(r.values()) for r in result_rows(msgs))
        assert got == sql_rows(tarn, BY_RESULT_SQL)

        # %%sql runs SQL in the KQL kernel.
        reply, msgs = ws.execute("%%sql\nSELECT 40 + 2 AS answer")
        assert reply["status"] == "ok" and result_rows(msgs) == [{"answer": 42}], msgs

        # An error is a Jupyter error with the code, placed in the cell.
        reply, msgs = ws.execute('SigninLogs\n| wher ResultType == "0"')
        assert reply["status"] == "error" and reply["ename"] == "TARN-2810 KQL_SYNTAX", reply
        assert "line 2" in reply["evalue"], reply
        assert of_type(msgs, "error")[0]["content"]["evalue"] == reply["evalue"]

        # Completion offers tables, then KQL's operators (not SQL's keywords).
        mid = ws.send("complete_request", {"code": "Sig", "cursor_pos": 3})
        assert ws.until("complete_reply", mid)[-1]["content"]["matches"] == ["SigninLogs"]
        mid = ws.send("complete_request", {"code": "SigninLogs | summ", "cursor_pos": 17})
        c = ws.until("complete_reply", mid)[-1]["content"]
        assert c["matches"] == ["summarize"] and c["cursor_start"] == 13, c
        mid = ws.send("complete_request", {"code": "SigninLogs | sel", "cursor_pos": 16})
        assert ws.until("complete_reply", mid)[-1]["content"]["matches"] == [], "no SQL SELECT in KQL"
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")


def test_kql_magics_in_the_sql_kernel(tarn):
    k = start_kernel(tarn, "tarn-sql")
    ws = Kernel(tarn["http"], k["id"])
    try:
        reply, msgs = ws.execute("%%kql\nSecurityEvent\n| count")
        assert reply["status"] == "ok", msgs
        assert only_value(result_rows(msgs)) == security_events(tarn)

        # A %kql line runs between the SQL statements around it.
        reply, msgs = ws.execute("SELECT 1 AS one;\n%kql SigninLogs | take 3\nSELECT 2 AS two")
        assert reply["status"] == "ok", msgs
        shown = [m["content"]["data"]["application/vnd.dataresource+json"]["data"]
                 for m in of_type(msgs, "display_data")
                 if "application/vnd.dataresource+json" in m["content"]["data"]]
        assert shown[0] == [{"one": 1}] and len(shown[1]) == 3, shown
        assert result_rows(msgs) == [{"two": 2}]

        # Its errors are placed in the cell: line 3 of the cell.
        reply, _ = ws.execute('%%kql\nSigninLogs\n| projekt UserPrincipalName')
        assert reply["status"] == "error" and reply["ename"] == "TARN-2810 KQL_SYNTAX", reply
        assert "line 3" in reply["evalue"], reply

        # A magic the kernel does not run is refused, naming the ones it does.
        reply, _ = ws.execute("%%python\nprint(1)")
        assert reply["status"] == "error" and reply["ename"] == "TARN-2803 UNSUPPORTED", reply
        assert "%%kql" in reply["evalue"], reply
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")


def test_kql_magics_in_the_python_kernel(tarn):
    status, k, _ = http("POST", f"{tarn['http']}/api/kernels",
                        {"name": "tarn-python", "env": {"KERNEL_TARN_VCORES": "1"}})
    assert status == 201, k
    ws = Kernel(tarn["http"], k["id"])
    try:
        reply, msgs = ws.execute("df = %kql SecurityEvent | count\nint(df.iloc[0, 0])")
        assert reply["status"] == "ok", msgs
        assert of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == str(security_events(tarn))

        reply, msgs = ws.execute(f"%%kql\n{BY_RESULT_KQL}")
        assert reply["status"] == "ok", msgs
        shown = [m["content"]["data"] for m in of_type(msgs, "display_data")]
        assert any("text/html" in d for d in shown), shown
        n = len(sql_rows(tarn, BY_RESULT_SQL))
        assert any(d.get("text/markdown") == f"{n:,} rows." for d in shown), shown

        # The frame holds what SQL answers.
        reply, msgs = ws.execute(
            f"by = %kql {BY_RESULT_KQL}\nsorted((str(a), int(b)) for a, b in by.itertuples(index=False))")
        assert reply["status"] == "ok", msgs
        got = of_type(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
        assert got.replace("\n", "").replace(" ", "") == str(sql_rows(tarn, BY_RESULT_SQL)).replace(" ", ""), got

        # A KQL error is raised with the server's code.
        reply, _ = ws.execute("%kql SigninLogs | wher x")
        assert reply["status"] == "error" and reply["ename"] == "TarnError", reply
        assert "TARN-2810 KQL_SYNTAX" in reply["evalue"], reply
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")


# --- The CLI --------------------------------------------------------------

def tarn_kql(info, *args, stdin=None):
    return subprocess.run([str(TARN), "kql", "--flight", info["uri"], *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_tarn_kql_prints_the_result(tarn, tmp_path):
    n = security_events(tarn)
    done = tarn_kql(tarn, "SecurityEvent | count", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [str(n)], done.stdout

    path = tmp_path / "by_result.kql"
    path.write_text(BY_RESULT_KQL + "\n")
    done = tarn_kql(tarn, "-f", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    got = sorted(tuple(json.loads(line).values()) for line in done.stdout.splitlines())
    assert got == sql_rows(tarn, BY_RESULT_SQL)

    done = tarn_kql(tarn, stdin="SigninLogs | take 3")
    assert done.returncode == 0, done.stderr
    assert "UserPrincipalName" in done.stdout and done.stdout.rstrip().endswith("(3 rows)"), done.stdout

    done = tarn_kql(tarn, "SigninLogs | wher x")
    assert done.returncode != 0
    assert "TARN-2810 KQL_SYNTAX" in done.stderr and "line 1" in done.stderr, done.stderr


# --- Jobs -----------------------------------------------------------------

def job_cli(info, token, *args):
    return subprocess.run([str(TARN), "job", "--gateway", info["http"], "--token", token, *args],
                          capture_output=True, text=True, timeout=180)


def executed_rows(output):
    """Rows of the data resources a run's executed notebook shows, by cell."""
    return [[o["data"]["application/vnd.dataresource+json"]["data"]
             for o in cell.get("outputs", []) if "application/vnd.dataresource+json" in o.get("data", {})]
            for cell in output["cells"] if cell["cell_type"] == "code"]


def test_a_kql_script_job_runs_as_kql(writable, tmp_path):
    token = mint(writable, "kq", roles=("demo=contributor",))
    script = tmp_path / "failed.kql"
    script.write_text("// failures by result\n" + BY_RESULT_KQL + "\n")
    made = job_cli(writable, token, "create", "--name", "kql script", "--workspace", "demo", "--sql", str(script))
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.strip()
    shown = json.loads(job_cli(writable, token, "show", job_id).stdout)
    assert shown["spec"]["kql"].startswith("// failures by result") and shown["spec"].get("sql") is None, shown
    ran = job_cli(writable, token, "run", job_id, "--wait")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    run_id = ran.stdout.split()[0]
    out = tmp_path / "out.ipynb"
    assert job_cli(writable, token, "output", run_id, "--out", str(out)).returncode == 0
    executed = json.loads(out.read_text())
    assert executed["metadata"]["kernelspec"]["name"] == "tarn-kql"
    [[rows]] = executed_rows(executed)
    assert sorted(tuple(r.values()) for r in rows) == sql_rows(writable, BY_RESULT_SQL, token)

    # The check plans KQL with the KQL planner: a mistake is refused at
    # submit with its code and place, and nothing is saved.
    script.write_text("SigninLogs\n| projekt UserPrincipalName\n")
    bad = job_cli(writable, token, "create", "--name", "kql bad", "--workspace", "demo", "--kql", str(script))
    assert bad.returncode != 0 and "TARN-2810" in bad.stderr and "line 2" in bad.stderr, bad.stderr
    assert "kql bad" not in job_cli(writable, token, "list").stdout


def test_kql_cells_in_sql_and_kql_notebook_jobs(writable, tmp_path):
    from tarn_provider import TarnJobs
    token = mint(writable, "kn", roles=("demo=contributor",))
    n = security_events(writable, token)

    def notebook(kernel, *sources):
        return {"nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": kernel}},
                "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": s} for s in sources]}

    jobs = TarnJobs(writable["http"], token=token)
    sql_nb = jobs.create("sql nb with kql", "demo", notebook=notebook(
        "tarn-sql", "SELECT COUNT(*) AS n FROM SecurityEvent", "%%kql\nSecurityEvent\n| count"))
    kql_nb = jobs.create("kql nb", "demo", notebook=notebook(
        "tarn-kql", "SecurityEvent | count", "%%sql\nSELECT 7 AS seven"))
    # Each code cell's one result: its rows' values.
    for job, expected in [(sql_nb, [[(n,)], [(n,)]]), (kql_nb, [[(n,)], [(7,)]])]:
        run = jobs.run(job["id"], wait=True)
        assert run["status"] == "succeeded", run
        got = executed_rows(jobs.output(run["run_id"]))
        assert [[tuple(r.values()) for r in rows] for [rows] in got] == expected, got

"""Jobs from Python and the CLI against a token-mode cluster: TarnJobs
writes what the same SQL reads over ADBC, `tarn job run --wait` follows a
run and fails when it fails, a job whose owner lost a role fails before it
writes, and other workspaces' users cannot see a job."""

import subprocess

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from tarn_provider import TarnError, TarnJobs

from conftest import TARN, mint

FAILED = ("SELECT UserPrincipalName, count(*) AS failures FROM demo.SigninLogs "
          "WHERE ResultType <> '0' GROUP BY UserPrincipalName")


def rows(info, token, text):
    with flight_sql.connect(info["uri"], db_kwargs={
            adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"},
            autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(text)
        return sorted(cur.fetchall())


def python_notebook(*sources, parameters=None):
    """A tarn-python notebook of code cells, with a `parameters` cell first
    when `parameters` (its source) is given."""
    def cell(source, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)} if tags else {},
                "outputs": [], "execution_count": None, "source": source}
    cells = ([cell(parameters, ["parameters"])] if parameters is not None else []) + [cell(s) for s in sources]
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "tarn-python", "display_name": "Tarn Python", "language": "python"}},
            "cells": cells}


def cli(info, token, *args):
    return subprocess.run(
        [str(TARN), "job", "--gateway", info["http"], "--token", token, *args],
        capture_output=True, text=True, timeout=120)


def test_a_job_from_python_writes_what_adbc_reads(writable):
    token = mint(writable, "jo", roles=("demo=contributor",))
    jobs = TarnJobs(writable["http"], token=token)
    job = jobs.create("py failed sign-ins", "demo", sql=f"CREATE OR REPLACE TABLE PyFailed_SPRK AS {FAILED}")
    run = jobs.run(job["id"], wait=True)
    assert run["status"] == "succeeded", run
    assert run["user"] == "jo"
    assert rows(writable, token, "SELECT * FROM demo.PyFailed_SPRK") == rows(writable, token, FAILED)
    assert run["result"]["tables"][0]["rows"] == len(rows(writable, token, FAILED))
    assert [j["id"] for j in jobs.list()] == [job["id"]]
    assert "succeeded" in jobs.logs(run["run_id"])
    assert jobs.output(run["run_id"])["nbformat"] == 4
    # Refusals carry the catalogue's code.
    with pytest.raises(TarnError) as e:
        jobs.create("bad", "demo", sql="SELEC 1")
    assert e.value.code == 2801


def test_the_cli_follows_a_run_and_exits_non_zero_when_it_fails(writable):
    token = mint(writable, "cy", roles=("demo=contributor",))
    good = TarnJobs(writable["http"], token=token).create("cli ok", "demo", sql="SELECT 1 AS one")
    done = cli(writable, token, "run", good["id"], "--wait")
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
    # A value that does not fit the cast fails the run at run time.
    bad = TarnJobs(writable["http"], token=token).create("cli bad", "demo", sql="SELECT CAST('x' AS INT)")
    failed = cli(writable, token, "run", bad["id"], "--wait")
    assert failed.returncode != 0
    assert "2809" in failed.stderr + failed.stdout
    listed = cli(writable, token, "list")
    assert listed.returncode == 0 and "cli ok" in listed.stdout, listed.stderr


def test_a_job_whose_owner_lost_a_role_fails_before_it_writes(writable):
    writer = mint(writable, "lu", roles=("demo=contributor",))
    jobs = TarnJobs(writable["http"], token=writer)
    job = jobs.create("lu copy", "demo", sql=f"CREATE TABLE LuCopy_SPRK AS {FAILED}")
    # Renewed with credentials that only read: the run needs contributor.
    TarnJobs(writable["http"], token=mint(writable, "lu", roles=("demo=reader",))).renew(job["id"])
    run = jobs.run(job["id"], wait=True)
    assert run["status"] == "failed", run
    assert run["error_code"] == 2203, run
    assert run["result"]["statements"] == [], run  # nothing ran
    with pytest.raises(Exception):
        rows(writable, writer, "SELECT count(*) FROM demo.LuCopy_SPRK")
    # Renewed with the role again, the same job runs (the control).
    jobs.renew(job["id"])
    assert jobs.run(job["id"], wait=True)["status"] == "succeeded"
    assert rows(writable, writer, "SELECT count(*) FROM demo.LuCopy_SPRK")[0][0] > 0


def test_other_workspaces_users_do_not_see_a_job(writable):
    owner = mint(writable, "mo", roles=("demo=contributor",))
    job = TarnJobs(writable["http"], token=owner).create("mo job", "demo", sql="SELECT 1")
    outsider = TarnJobs(writable["http"], token=mint(writable, "hal", roles=("hr=owner",)))
    assert all(j["id"] != job["id"] for j in outsider.list())
    with pytest.raises(TarnError) as e:
        outsider.show(job["id"])
    assert e.value.code == 2315
    with pytest.raises(TarnError) as e:
        outsider.run(job["id"])
    assert e.value.code == 2315


def test_a_scheduled_notebook_job_from_the_cli(writable, tmp_path):
    import json
    token = mint(writable, "nb", roles=("demo=contributor",))
    nb = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "tarn-sql", "display_name": "Tarn SQL"}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Nightly"},
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "min_failures = 1",
             "outputs": [], "execution_count": None},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
             "source": f"CREATE OR REPLACE TABLE CliNightly_SPRK AS {FAILED} HAVING count(*) >= $min_failures"},
        ],
    }
    path = tmp_path / "nightly.ipynb"
    path.write_text(json.dumps(nb))
    made = cli(writable, token, "create", "--name", "cli nightly", "--workspace", "demo",
               "--notebook", str(path), "--daily", "02:30", "--timezone", "Europe/Berlin")
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.strip()
    shown = json.loads(cli(writable, token, "show", job_id).stdout)
    assert shown["spec"]["schedule"]["daily"] == "02:30"
    assert shown["next_fire_unix_ms"] > 0
    ran = cli(writable, token, "run", job_id, "--param", "min_failures=2", "--wait")
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[0]
    assert "wrote" in ran.stdout and "CliNightly_SPRK" in ran.stdout, ran.stdout
    runs = cli(writable, token, "runs", job_id)
    assert run_id in runs.stdout and "succeeded" in runs.stdout, runs.stdout
    assert "min_failures" in cli(writable, token, "logs", run_id).stdout
    out = tmp_path / "out.ipynb"
    assert cli(writable, token, "output", run_id, "--out", str(out)).returncode == 0
    executed = json.loads(out.read_text())
    assert executed["cells"][2]["outputs"], executed["cells"]
    # A bad notebook is refused with its code, and nothing is saved.
    nb["cells"][2]["source"] = "x = input('user?')"
    path.write_text(json.dumps(nb))
    bad = cli(writable, token, "create", "--name", "cli bad", "--workspace", "demo", "--notebook", str(path))
    assert bad.returncode != 0 and "2317" in bad.stderr, bad.stderr
    assert cli(writable, token, "delete", job_id).returncode == 0
    assert "cli nightly" not in cli(writable, token, "list").stdout


def test_a_script_job_appends_to_an_analytics_table_what_adbc_reads(writable):
    token = mint(writable, "ali", roles=("demo=contributor",))
    jobs = TarnJobs(writable["http"], token=token)
    job = jobs.create("daily failures", "demo", sql=(
        f"CREATE TABLE IF NOT EXISTS DailyFailures_SPRK_CL AS {FAILED} LIMIT 0;\n"
        f"INSERT INTO DailyFailures_SPRK_CL {FAILED}"))
    run = jobs.run(job["id"], wait=True)
    assert run["status"] == "succeeded", run
    assert rows(writable, token, "SELECT * FROM demo.DailyFailures_SPRK_CL") == rows(writable, token, FAILED)
    # Run again, it appends once more (the analytics tier takes appends).
    assert jobs.run(job["id"], wait=True)["status"] == "succeeded"
    twice = rows(writable, token, "SELECT count(*) FROM demo.DailyFailures_SPRK_CL")[0][0]
    assert twice == 2 * len(rows(writable, token, FAILED))


def test_a_python_notebook_job_runs_in_a_hosted_kernel_with_its_parameters(writable):
    """A tarn-python notebook job: the parameters cell's defaults are
    overridden by the run's values (papermill's way), `lake` acts as the
    owner, the executed notebook keeps each cell's outputs, and a cell that
    raises fails the run with the cell and the error."""
    token = mint(writable, "pyjobs", roles=["demo=owner"])
    jobs = TarnJobs(writable["http"], token=token)
    nb = python_notebook(
        "top = (lake.read_table('SigninLogs').filter(col('ResultType') != '0')\n"
        "       .group_by('UserPrincipalName').agg(n=F.count())\n"
        "       .filter(col('n') >= min_failures))\n"
        "print(label, top.count())",
        "lake.save_as_table(top, 'PyJobTop_SPRK', write_options={'mode': 'overwrite'})\n"
        "lake.read_table('PyJobTop_SPRK').count()",
        parameters="min_failures = 1000\nlabel = 'default'")
    job = jobs.create("py-top-failures", "demo", notebook=nb)
    run = jobs.run(job["id"], parameters={"min_failures": 20, "label": "nightly"}, wait=True)
    assert run["status"] == "succeeded", run
    expected = rows(writable, token,
                        "SELECT COUNT(*) FROM (SELECT UserPrincipalName FROM demo.SigninLogs "
                        "WHERE ResultType <> '0' GROUP BY 1 HAVING COUNT(*) >= 20)")[0][0]
    assert expected > 0
    out = jobs.output(run["run_id"])
    texts = [o.get("text", "") for c in out["cells"] for o in c.get("outputs", [])]
    assert any(t.strip() == f"nightly {expected}" for t in texts), texts
    results = [o["data"]["text/plain"] for c in out["cells"] for o in c.get("outputs", [])
               if o.get("output_type") == "execute_result"]
    assert str(expected) in results, results

    # A cell that raises fails the run with the cell and the error.
    nb["cells"][1]["source"] = "undefined_name + 1"
    bad = jobs.create("py-broken", "demo", notebook=nb)
    run = jobs.run(bad["id"], wait=True)
    assert run["status"] == "failed", run
    assert run["error_code"] == 2806 and "NameError" in run["message"], run


def test_a_retried_python_job_writes_each_table_once(writable):
    """A tarn-python job's own `lake` writes (a frame written by the
    cluster, a pandas frame ingested) are made once per run: the run fails
    after writing, is tried again, and the second attempt skips the writes
    the first landed, while a new run writes again."""
    token = mint(writable, "pyonce", roles=["demo=owner"])
    jobs = TarnJobs(writable["http"], token=token)
    nb = python_notebook(
        "import pandas as pd\n"
        "failed = lake.read_table('SigninLogs').filter(col('ResultType') != '0').select('UserPrincipalName')\n"
        "lake.save_as_table(failed, 'PyOnce_SPRK')\n"
        "lake.save_as_table(pd.DataFrame({'x': [1, 2, 3]}), 'PyOnceIngest_SPRK')",
        "if 'PyGo_SPRK' not in lake.list_tables():\n"
        "    raise RuntimeError('not yet')")
    failed = rows(writable, token, "SELECT COUNT(*) FROM demo.SigninLogs WHERE ResultType <> '0'")[0][0]
    assert failed > 0
    job = jobs.create("py-once", "demo", notebook=nb)
    run = jobs.run(job["id"], wait=True)
    assert run["status"] == "failed" and "not yet" in run["message"], run
    assert rows(writable, token, "SELECT COUNT(*) FROM demo.PyOnce_SPRK")[0][0] == failed
    assert [t["table"] for t in run["result"]["tables"]] == ["demo.PyOnce_SPRK", "demo.PyOnceIngest_SPRK"], run

    rows(writable, token, "CREATE TABLE demo.PyGo_SPRK AS SELECT 1 AS go")
    jobs.retry(run["run_id"])
    again = jobs.wait(run["run_id"])
    assert again["status"] == "succeeded", again
    assert rows(writable, token, "SELECT COUNT(*) FROM demo.PyOnce_SPRK")[0][0] == failed
    assert rows(writable, token, "SELECT COUNT(*) FROM demo.PyOnceIngest_SPRK")[0][0] == 3
    texts = [o.get("text", "") for c in jobs.output(run["run_id"])["cells"] for o in c.get("outputs", [])]
    assert sum("already written by an earlier attempt" in t for t in texts) == 2, texts

    # Control: a new run of the same job is new work, and appends again.
    second = jobs.run(job["id"], wait=True)
    assert second["status"] == "succeeded", second
    assert rows(writable, token, "SELECT COUNT(*) FROM demo.PyOnce_SPRK")[0][0] == 2 * failed
    assert rows(writable, token, "SELECT COUNT(*) FROM demo.PyOnceIngest_SPRK")[0][0] == 6


def test_a_python_job_whose_cell_does_not_parse_is_refused_at_submit(writable):
    """A tarn-python notebook is parsed (with IPython's syntax, so `%sql`
    lines are fine) when the job is created: a typo fails then, with the
    cell, not at the first scheduled run; nothing is saved."""
    token = mint(writable, "pysyntax", roles=["demo=owner"])
    jobs = TarnJobs(writable["http"], token=token)
    nb = python_notebook(
        "df = %sql SELECT 1 AS x\nx = int(df['x'][0])",
        "if x = 1:\n    print('one')")
    before = [j["id"] for j in jobs.list()]
    with pytest.raises(TarnError) as e:
        jobs.create("py-typo", "demo", notebook=nb)
    assert e.value.code == 2317, e.value
    assert "cell 2 does not parse" in str(e.value) and "SyntaxError" in str(e.value), e.value
    assert [j["id"] for j in jobs.list()] == before
    # Control: the same notebook, fixed, is accepted and runs.
    nb["cells"][1]["source"] = "if x == 1:\n    print('one')"
    job = jobs.create("py-typo", "demo", notebook=nb)
    assert jobs.run(job["id"], wait=True)["status"] == "succeeded"

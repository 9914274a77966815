"""Seed 002's hunting flow with the real `msticpy` package against Tarn:
`QueryProvider("Tarn")`, `connect`, `exec_query` returning a pandas
DataFrame, and `schema`."""

import warnings

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import mint

QUERY = ("SELECT UserPrincipalName, COUNT(*) AS failures FROM SigninLogs WHERE ResultType <> '0' "
         "GROUP BY UserPrincipalName ORDER BY failures DESC, UserPrincipalName LIMIT 5")


@pytest.fixture(scope="module")
def query_provider_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import msticpy
    import tarn_provider
    msticpy.load_plugins(tarn_provider.msticpy_plugin_dir())
    return msticpy.QueryProvider


def test_query_provider_tarn_runs_the_hunting_flow(writable, query_provider_class):
    import pandas as pd

    token = mint(writable, "hunter", roles=["demo=reader"])
    qry_prov = query_provider_class("Tarn")
    qry_prov.connect(uri=writable["uri"], token=token, database="demo")
    df = qry_prov.exec_query(QUERY)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["UserPrincipalName", "failures"]
    with flight_sql.connect(writable["uri"], db_kwargs={
            adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}) as conn:
        with conn.cursor() as cur:
            cur.execute(QUERY.replace("FROM SigninLogs", "FROM demo.SigninLogs"))
            expected = cur.fetchall()
    assert [tuple(r) for r in df.itertuples(index=False)] == [tuple(r) for r in expected]

    schema = qry_prov.schema
    assert "SigninLogs" in schema and "UserPrincipalName" in schema["SigninLogs"], list(schema)[:5]
    assert schema["SigninLogs"]["UserPrincipalName"] in ("string", "large_string", "string_view")


def test_a_refused_query_names_its_code(writable, query_provider_class):
    from tarn_provider import TarnError

    token = mint(writable, "hunter2", roles=["demo=reader"])
    qry_prov = query_provider_class("Tarn")
    qry_prov.connect(f"{writable['uri']};token={token};database=demo")
    with pytest.raises(TarnError) as e:
        qry_prov.exec_query("SELECT * FROM hr.Salaries")
    assert e.value.code == 2001, e.value


def test_the_driver_runs_kql_per_query_or_per_connection(writable, query_provider_class):
    from tarn_provider import TarnError

    token = mint(writable, "hunter3", roles=["demo=reader"])
    kql = ('SigninLogs | where ResultType != "0" | summarize failures = count() by UserPrincipalName '
           '| sort by failures desc, UserPrincipalName asc | take 5')
    qry_prov = query_provider_class("Tarn")
    qry_prov.connect(uri=writable["uri"], token=token, database="demo")
    sql = qry_prov.exec_query(QUERY)
    df = qry_prov.exec_query(kql, language="kql")
    assert list(df.columns) == ["UserPrincipalName", "failures"], df
    assert [tuple(r) for r in df.itertuples(index=False)] == [tuple(r) for r in sql.itertuples(index=False)]
    with pytest.raises(TarnError) as e:
        qry_prov.exec_query("SELECT 1", language="cobol")
    assert e.value.code == 2805 and "cobol" in e.value.message

    kql_prov = query_provider_class("Tarn")
    kql_prov.connect(uri=writable["uri"], token=token, database="demo", language="kql")
    assert kql_prov.exec_query("SigninLogs | take 3").shape[0] == 3

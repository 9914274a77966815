"""Tarn's notebook provider: the lake's tables from Python.

    from tarn_provider import TarnProvider
    lake = TarnProvider("grpc://127.0.0.1:50060", token="tarn....")
    lake.list_databases()                      # ['demo', ...]
    lake.list_tables("demo")                   # ['AuditLogs', 'SigninLogs', ...]
    t = lake.read_table("SigninLogs", "demo")  # a lazy Frame: nothing read yet
    t.filter(col("ResultType") != "0").group_by("UserPrincipalName").agg(n=F.count()).to_pandas()
    run = lake.save_as_table(t, "Risky_SPRK", "demo", write_options={"mode": "overwrite"})
    lake.delete_table("Risky_SPRK", "demo")

Everything goes over Arrow Flight SQL (ADBC), so the same rules hold as for
SQL: a refused call raises :class:`TarnError` carrying the server's stable
code, the cause and the fix.
"""

from .frame import F, Frame, col, expr, lit
from .jobs import TarnJobs
from .provider import TarnError, TarnProvider

def msticpy_plugin_dir():
    """The folder to give `msticpy.load_plugins` for `QueryProvider("Tarn")`
    (needs the `msticpy` extra: `pip install ./clients/python[msticpy]`)."""
    import pathlib
    return str(pathlib.Path(__file__).resolve().parent / "msticpy_plugin")


__all__ = ["msticpy_plugin_dir", "F", "Frame", "TarnError", "TarnJobs", "TarnProvider", "col", "expr", "lit"]

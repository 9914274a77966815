"""Tarn's notebook provider: the lake's tables from Python.

    from tarn_provider import TarnProvider
    lake = TarnProvider("grpc://127.0.0.1:50060", token="tarn....")
    lake.list_databases()                      # ['demo', ...]
    lake.list_tables("demo")                   # ['AuditLogs', 'SigninLogs', ...]
    t = lake.read_table("SigninLogs", "demo")  # a pyarrow.Table (t.to_pandas() for pandas)
    run = lake.save_as_table(t, "Risky_SPRK", "demo", write_options={"mode": "overwrite"})
    lake.delete_table("Risky_SPRK", "demo")

Everything goes over Arrow Flight SQL (ADBC), so the same rules hold as for
SQL: a refused call raises :class:`TarnError` carrying the server's stable
code, the cause and the fix.
"""

from .jobs import TarnJobs
from .provider import TarnError, TarnProvider

__all__ = ["TarnError", "TarnJobs", "TarnProvider"]

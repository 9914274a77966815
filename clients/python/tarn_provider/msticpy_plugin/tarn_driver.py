"""The MSTICpy query-provider driver for Tarn.

    import msticpy, tarn_provider
    msticpy.load_plugins(tarn_provider.msticpy_plugin_dir())
    qry_prov = msticpy.QueryProvider("Tarn")
    qry_prov.connect(uri="grpc://127.0.0.1:50060", token=TOKEN, database="demo")
    df = qry_prov.exec_query("SELECT * FROM SigninLogs LIMIT 10")   # pandas
    qry_prov.schema                                                 # {table: {column: type}}

Inside a Tarn Python kernel `connect()` needs no arguments: it uses the
kernel's own `lake`. Elsewhere the address and token come from the
arguments, or from TARN_URI / TARN_TOKEN. Queries are SQL, run on the
cluster; a refusal raises `tarn_provider.TarnError` with its code and fix.
KQL runs too, per query or for the connection:

    qry_prov.exec_query('SigninLogs | where ResultType != "0" | take 10', language="kql")
    qry_prov.connect(uri=…, token=TOKEN, database="demo", language="kql")
"""

import os

from msticpy.data.drivers.driver_base import DriverBase

from tarn_provider.provider import TarnError, TarnProvider


class TarnDriver(DriverBase):
    """Runs MSTICpy queries on Tarn over Flight SQL."""

    DATA_ENVIRONMENTS = ["Tarn"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lake = None
        self._language = "sql"
        self._loaded = True

    def connect(self, connection_str=None, **kwargs):
        """Connects to Tarn: `uri`, `token`, `database` (or a connection
        string `uri;token=…;database=…`); in a Tarn kernel, to its lake."""
        settings = {}
        if connection_str:
            first, *rest = connection_str.split(";")
            settings["uri"] = first.strip()
            for part in rest:
                if "=" in part:
                    k, v = part.split("=", 1)
                    settings[k.strip()] = v.strip()
        settings.update({k: v for k, v in kwargs.items() if v is not None})
        self._language = _language(settings.get("language", "sql"))
        uri = settings.get("uri") or os.environ.get("TARN_URI")
        if uri is None:
            kernel_lake = _kernel_lake()
            if kernel_lake is not None:
                self._lake = kernel_lake
                self._connected = True
                return
            uri = "grpc://127.0.0.1:50060"
        self._lake = TarnProvider(uri, token=settings.get("token") or os.environ.get("TARN_TOKEN"),
                                  database=settings.get("database"))
        self._connected = True

    def query(self, query, query_source=None, **kwargs):
        """Runs `query` (SQL, or KQL with `language="kql"` here or at
        connect); the result as a pandas DataFrame."""
        return self.query_with_results(query, **kwargs)[0]

    def query_with_results(self, query, **kwargs):
        if not self._connected:
            raise TarnError(2302, "SESSION_NOT_FOUND", "the Tarn driver is not connected",
                            "call connect() first")
        language = _language(kwargs.get("language") or self._language)
        table = self._lake._query(query, language=language)
        return table.to_pandas(), {"rows": table.num_rows}

    @property
    def schema(self):
        """Tables of the connected workspace, each with its columns and types."""
        if not self._connected:
            return {}
        out = {}
        for name in self._lake.list_tables():
            t = self._lake._query(f"SELECT * FROM {self._lake._name(name, None)} LIMIT 0")
            out[name] = {f.name: str(f.type) for f in t.schema}
        return out


def _language(name):
    """`sql` or `kql` (any case); anything else is refused here, with the
    code the gateway would give it."""
    lowered = str(name).strip().lower()
    if lowered not in ("sql", "kql"):
        raise TarnError(2805, "INVALID_ARGUMENT", f"unknown query language {name!r}",
                        "pass language='sql' (the default) or language='kql'")
    return lowered


def _kernel_lake():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    lake = ip.user_ns.get("lake") if ip is not None else None
    return lake if isinstance(lake, TarnProvider) else None


__all__ = ["TarnDriver"]

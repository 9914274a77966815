"""What a hosted `tarn-python` kernel starts with: `lake` and `%sql`.

The gateway runs :func:`bind` in every kernel before its user's first
cell. `lake` is a :class:`TarnProvider` that reaches the gateway over the
Unix socket bound into the kernel's sandbox (the kernel has no network),
with the short-lived credential the gateway keeps renewed in a file — the
kernel never holds its user's own token. A kernel pod reaches its gateway
over the pod network instead, with a credential handed over at setup that
the gateway keeps alive while the kernel lives.

    %sql SELECT count(*) FROM SigninLogs          # a line: returns the result
    df = %sql SELECT * FROM SigninLogs LIMIT 10   # as a pandas DataFrame
    %%sql                                         # a cell: shows the result,
    SELECT UserPrincipalName, count(*) AS n       # at most 10,000 rows,
    FROM SigninLogs GROUP BY 1 ORDER BY n DESC    # with the true row count

`%kql` and `%%kql` do the same with a KQL query:

    df = %kql SigninLogs | where ResultType != "0" | take 10
    %%kql
    SigninLogs
    | summarize count() by ResultType
"""

import os

from .provider import TarnProvider, _set_language, flight_sql


class KernelLake(TarnProvider):
    """A provider whose credential is re-read from its file before each
    call, reconnecting when the gateway has renewed it (or, given as a
    value, used as it is)."""

    def __init__(self, uri, credential_file=None, database=None, credential=None):
        self._uri = uri
        self._credential_file = credential_file
        self._credential = credential
        self._database = database
        self._header = None
        self._connection = None

    def _read_credential(self):
        if self._credential_file is None:
            return self._credential
        with open(self._credential_file) as f:
            return f.read().strip()

    @property
    def _conn(self):
        header = self._read_credential()
        if self._connection is None or header != self._header:
            if self._connection is not None:
                try:
                    self._connection.close()
                except Exception:  # noqa: BLE001 - an old connection may be gone already
                    pass
            self._connection = flight_sql.connect(
                self._uri,
                db_kwargs={"adbc.flight.sql.authorization_header": header},
                autocommit=True,
            )
            self._header = header
        return self._connection

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def sql_capped(self, query, max_rows, language="sql"):
        """Runs `query` (written in `language`); at most `max_rows` rows
        kept, and the true count."""
        import pyarrow as pa

        def go():
            with self._conn.cursor() as cur:
                _set_language(cur, language)
                cur.execute(query)
                reader = cur.fetch_record_batch()
                kept, total = [], 0
                for batch in reader:
                    room = max_rows - sum(b.num_rows for b in kept)
                    if room > 0:
                        kept.append(batch.slice(0, room))
                    total += batch.num_rows
                return pa.Table.from_batches(kept, schema=reader.schema), total
        return self._call(go)

    def __repr__(self):
        return f"<Tarn lake, workspace {self._database!r}>"


def bind(uri, credential_file=None, database=None, user=None, max_rows=10_000, credential=None):
    """Makes `lake` and the `%sql` / `%%sql` and `%kql` / `%%kql` magics in
    the running kernel."""
    from IPython import get_ipython
    from IPython.display import display, Markdown

    ip = get_ipython()
    lake = KernelLake(uri, credential_file, database, credential=credential)
    ip.user_ns["lake"] = lake
    from .frame import F, col, expr, lit
    ip.user_ns.update({"col": col, "lit": lit, "expr": expr, "F": F})
    os.environ["TARN_USER"] = user or ""

    def magic(language):
        def run(line, cell=None):
            query = (cell if cell is not None else line).strip()
            if not query:
                return None
            if cell is None:
                return _frame(lake._query(query, language=language))
            table, total = lake.sql_capped(query, max_rows, language=language)
            display(_frame(table))
            if total > table.num_rows:
                display(Markdown(f"Showing {table.num_rows:,} of {total:,} rows."))
            else:
                display(Markdown(f"{total:,} rows."))
            return None
        run.__name__ = language
        run.__doc__ = f"Runs a {language.upper()} query on the cluster: `%{language}` returns it as a DataFrame, `%%{language}` shows it."
        return run

    ip.register_magic_function(magic("sql"), magic_kind="line_cell", magic_name="sql")
    ip.register_magic_function(magic("kql"), magic_kind="line_cell", magic_name="kql")


def _frame(table):
    try:
        return table.to_pandas()
    except ImportError:
        return table

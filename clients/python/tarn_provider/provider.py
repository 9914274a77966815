"""The provider object and its errors."""

import json
import re
import uuid

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa

from .frame import Frame

WRITE_OPTIONS_HEADER = "x-tarn-write-options"
LANGUAGE_HEADER = "x-tarn-language"
RUN_ID_HEADER = "x-tarn-run-id"
CALL_HEADER = "adbc.flight.sql.rpc.call_header."

_CODE = re.compile(r"TARN-(\d{4}) ([A-Z_]+): (.*?)(?:\. Fix: (.*?))?(?: \([A-Za-z]+; [\w.]+\))?$", re.S)


class TarnError(Exception):
    """A refusal from Tarn: `code` (e.g. 2603), `name`, `message`, `fix`."""

    def __init__(self, code, name, message, fix=None):
        super().__init__(f"TARN-{code} {name}: {message}" + (f". Fix: {fix}" if fix else ""))
        self.code = code
        self.name = name
        self.message = message
        self.fix = fix

    @classmethod
    def parse(cls, error):
        text = str(error)
        m = _CODE.search(text)
        if not m:
            return None
        return cls(int(m.group(1)), m.group(2), m.group(3), m.group(4))


def _quote(name):
    return '"' + str(name).replace('"', '""') + '"'


class TarnProvider:
    """The lake of one Tarn deployment, as its notebook users see it.

    `uri` is the gateway's Flight SQL address; `token` a token from
    `tarn token` (leave it out against a dev-mode standalone); `database`
    the workspace used when a call names none.
    """

    def __init__(self, uri="grpc://127.0.0.1:50060", token=None, database=None):
        kwargs = {}
        if token:
            kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
        self._conn = flight_sql.connect(uri, db_kwargs=kwargs, autocommit=True)
        self._database = database

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - every driver error carries the server's text
            err = TarnError.parse(e)
            if err is None:
                raise
            raise err from None

    def _name(self, table, database):
        if not isinstance(table, str) or not table:
            raise TarnError(2805, "INVALID_ARGUMENT", "table must be a non-empty string",
                            "pass the table's name, e.g. 'SigninLogs'")
        db = database or self._database
        return f"{_quote(db)}.{_quote(table)}" if db else _quote(table)

    def list_databases(self):
        """Workspaces the caller holds a role in."""
        def go():
            objs = self._conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
            return sorted(s["db_schema_name"] for c in objs for s in (c["catalog_db_schemas"] or []))
        return self._call(go)

    def list_tables(self, database=None):
        """Tables of a workspace (the default one if none is named)."""
        def go():
            kwargs = {"depth": "tables"}
            if database or self._database:
                kwargs["db_schema_filter"] = database or self._database
            objs = self._conn.adbc_get_objects(**kwargs).read_all().to_pylist()
            names = [t["table_name"] for c in objs for s in (c["catalog_db_schemas"] or [])
                     for t in (s["db_schema_tables"] or [])]
            return sorted(names)
        return self._call(go)

    def read_table(self, table, database=None):
        """The table as a lazy :class:`Frame`: filter, join, aggregate,
        sort on the cluster; `.to_arrow()` / `.to_pandas()` pull the
        result. A table that does not exist or may not be read is refused
        here, with its code."""
        frame = Frame(self, f"SELECT * FROM {self._name(table, database)}")
        frame.schema  # checked now (planned, no rows read), as a read would be
        return frame

    def sql(self, query):
        """A query as a lazy :class:`Frame`."""
        return Frame(self, query)

    def kql(self, query):
        """Runs a KQL query; its result as a pyarrow Table."""
        return self._query(query, language="kql")

    def _query(self, sql, progress=False, language="sql"):
        def go():
            with self._conn.cursor() as cur:
                _set_language(cur, language)
                cur.execute(sql)
                return cur.fetch_arrow_table()
        return self._call(go)

    def _batches(self, sql):
        def go():
            cur = self._conn.cursor()
            cur.execute(sql)
            return cur, cur.fetch_record_batch()
        cur, reader = self._call(go)
        try:
            while True:
                try:
                    batch = self._call(reader.read_next_batch)
                except StopIteration:
                    return
                yield batch
        finally:
            cur.close()

    def save_as_table(self, df, table, database=None, write_options=None):
        """Writes `df` (pyarrow Table or RecordBatchReader, or pandas
        DataFrame) to `table`, creating it if needed; returns the run id.

        `write_options`: `{"mode": "append" | "overwrite", "partitionBy":
        [columns]}`; left out, the mode is append. Custom tables are named
        `<Name>_SPRK` (lake tier) or `<Name>_SPRK_CL` (analytics tier,
        append-only).
        """
        if write_options is None:
            write_options = {"mode": "append"}
        if not isinstance(write_options, dict):
            raise TarnError(2805, "INVALID_ARGUMENT", "write_options must be a dict",
                            "pass e.g. {'mode': 'append'}")
        if isinstance(df, Frame):
            return self._save_frame(df, table, database, write_options)
        if isinstance(df, (pa.Table, pa.RecordBatchReader, pa.RecordBatch)):
            data = df
        elif hasattr(df, "to_arrow"):
            data = df.to_arrow()
        else:
            data = pa.Table.from_pandas(df, preserve_index=False)
        run_id = f"tarn-save-{uuid.uuid4().hex}"
        db = database or self._database

        def go():
            with self._conn.cursor() as cur:
                cur.adbc_statement.set_options(**{
                    CALL_HEADER + WRITE_OPTIONS_HEADER: json.dumps(write_options),
                    CALL_HEADER + RUN_ID_HEADER: run_id,
                })
                cur.adbc_ingest(table, data, mode="create_append", db_schema_name=db)
            return run_id
        return self._call(go)

    def _save_frame(self, frame, table, database, write_options):
        """A frame is written by the cluster: `CREATE TABLE … AS` its query
        when the table is new, else `INSERT [OVERWRITE]`; its rows never
        pass through this process."""
        mode = write_options.get("mode", "append")
        if mode not in ("append", "overwrite"):
            raise TarnError(2805, "INVALID_ARGUMENT", f"mode must be 'append' or 'overwrite', not {mode!r}",
                            "pass write_options={'mode': 'append'} or {'mode': 'overwrite'}")
        name = self._name(table, database)
        parts = write_options.get("partitionBy") or []
        partitioned = f" PARTITIONED BY ({', '.join(_quote(c) for c in parts)})" if parts else ""
        run_id = f"tarn-save-{uuid.uuid4().hex}"
        try:
            self._query(f"CREATE TABLE {name}{partitioned} AS {frame.to_sql()}")
        except TarnError as e:
            if e.code != 2102:  # TABLE_ALREADY_EXISTS: append or overwrite it
                raise
            verb = "INSERT OVERWRITE" if mode == "overwrite" else "INSERT INTO"
            self._query(f"{verb} {name} {frame.to_sql()}")
        return run_id

    def delete_table(self, table, database=None):
        """Deletes a lake-tier table (`<Name>_SPRK`); needs the owner role."""
        def go():
            with self._conn.cursor() as cur:
                cur.execute(f"DROP TABLE {self._name(table, database)}")
                cur.fetchall()
        return self._call(go)


def _set_language(cursor, language):
    """Sends the query language with this cursor's statements (SQL when
    not said)."""
    if language != "sql":
        cursor.adbc_statement.set_options(**{CALL_HEADER + LANGUAGE_HEADER: language})

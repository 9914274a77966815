"""Lazy frames: a table read, filtered, joined and aggregated on the
cluster, with only the result pulled into Python.

    from tarn_provider import col, lit, F
    s = lake.read_table("SigninLogs")                 # nothing is read yet
    failed = (s.filter(col("ResultType") != "0")
               .group_by("UserPrincipalName")
               .agg(failures=F.count(), ips=F.count_distinct(col("IPAddress")))
               .sort(col("failures").desc())
               .limit(10))
    failed.show()                     # runs on the cluster, prints 10 rows
    failed.to_pandas()                # pulls the 10 rows
    lake.save_as_table(failed, "TopFailures_SPRK")   # written by the cluster

A frame is a query, carried to the gateway as SQL text: each step wraps
the previous one as a subquery, and the gateway plans the whole thing with
the same planner, roles and lake rules as any SQL. Expressions are built
with `col`, `lit`, `expr` and `F`, or given as SQL text where a condition
or a new column is expected (`s.filter("ResultType <> '0'")`).
"""

import datetime
import decimal
import itertools

_names = itertools.count(1)


def _quote(name):
    return '"' + str(name).replace('"', '""') + '"'


def _literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float, decimal.Decimal)):
        return repr(v) if not isinstance(v, decimal.Decimal) else str(v)
    if isinstance(v, datetime.datetime):
        return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
    if isinstance(v, datetime.date):
        return f"DATE '{v.isoformat()}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    raise TypeError(f"cannot use {type(v).__name__} as a SQL value")


class Expr:
    """A column expression; operators build larger ones."""

    def __init__(self, sql, name=None):
        self.sql = sql
        self.name = name

    def _bin(self, op, other):
        return Expr(f"({self.sql} {op} {_expr(other).sql})")

    def __eq__(self, o): return self._bin("=", o)          # noqa: E704
    def __ne__(self, o): return self._bin("<>", o)         # noqa: E704
    def __lt__(self, o): return self._bin("<", o)          # noqa: E704
    def __le__(self, o): return self._bin("<=", o)         # noqa: E704
    def __gt__(self, o): return self._bin(">", o)          # noqa: E704
    def __ge__(self, o): return self._bin(">=", o)         # noqa: E704
    def __and__(self, o): return self._bin("AND", o)       # noqa: E704
    def __or__(self, o): return self._bin("OR", o)         # noqa: E704
    def __add__(self, o): return self._bin("+", o)         # noqa: E704
    def __sub__(self, o): return self._bin("-", o)         # noqa: E704
    def __mul__(self, o): return self._bin("*", o)         # noqa: E704
    def __truediv__(self, o): return self._bin("/", o)     # noqa: E704
    def __mod__(self, o): return self._bin("%", o)         # noqa: E704
    def __invert__(self): return Expr(f"(NOT {self.sql})")  # noqa: E704
    def __neg__(self): return Expr(f"(- {self.sql})")       # noqa: E704
    __hash__ = None

    def __bool__(self):
        raise TypeError("a column expression has no truth value: combine conditions with & and |, not and/or")

    def isin(self, values):
        values = list(values)
        if not values:
            return Expr("FALSE")
        return Expr(f"({self.sql} IN ({', '.join(_expr(v).sql for v in values)}))")

    def is_null(self): return Expr(f"({self.sql} IS NULL)")          # noqa: E704
    def is_not_null(self): return Expr(f"({self.sql} IS NOT NULL)")  # noqa: E704
    def like(self, pattern): return self._bin("LIKE", pattern)       # noqa: E704
    def between(self, lo, hi):
        return Expr(f"({self.sql} BETWEEN {_expr(lo).sql} AND {_expr(hi).sql})")

    def cast(self, sql_type):
        return Expr(f"CAST({self.sql} AS {sql_type})")

    def alias(self, name):
        return Expr(self.sql, name)

    def desc(self): return Expr(f"{self.sql} DESC")  # noqa: E704
    def asc(self): return Expr(f"{self.sql} ASC")    # noqa: E704

    def over(self, partition_by=(), order_by=()):
        """A window: `F.row_number().over(partition_by="User", order_by=col("t").desc())`."""
        parts = []
        pb = [_expr(p, column=True).sql for p in _seq(partition_by)]
        ob = [_expr(o, column=True).sql for o in _seq(order_by)]
        if pb:
            parts.append("PARTITION BY " + ", ".join(pb))
        if ob:
            parts.append("ORDER BY " + ", ".join(ob))
        return Expr(f"{self.sql} OVER ({' '.join(parts)})")

    def __repr__(self):
        return f"Expr({self.sql}{' AS ' + self.name if self.name else ''})"


def _seq(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def col(name):
    """A column by name (any spelling: it is quoted)."""
    return Expr(_quote(name), str(name))


def lit(value):
    """A value, quoted as SQL."""
    return Expr(_literal(value))


def expr(sql):
    """An expression written as SQL text, e.g.
    `F.sum(expr("CASE WHEN ResultType <> '0' THEN 1 ELSE 0 END"))`."""
    return Expr(f"({sql})")


def _expr(x, column=False):
    """An Expr as is; a str as a column name (`column`) or as a value; other
    Python values as literals."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, str) and column:
        return col(x)
    return lit(x)


def _sql_expr(x):
    """An expression given to filter/with_column: Expr, or SQL text."""
    if isinstance(x, Expr):
        return x.sql
    if isinstance(x, str):
        return f"({x})"
    raise TypeError(f"expected an expression or SQL text, not {type(x).__name__}")


class _Functions:
    """Aggregate, window and scalar functions: `F.count()`, `F.sum(col("n"))`…"""

    @staticmethod
    def count(e=None):
        return Expr("COUNT(*)" if e is None else f"COUNT({_expr(e, True).sql})")

    @staticmethod
    def count_distinct(e):
        return Expr(f"COUNT(DISTINCT {_expr(e, True).sql})")

    def __getattr__(self, fn):
        # Any SQL function by name: F.sum, F.avg, F.min, F.max, F.lower,
        # F.date_trunc("hour", col("t")), F.row_number(), F.lag(col("x"))…
        if fn.startswith("_"):
            raise AttributeError(fn)

        def call(*args):
            rendered = []
            for a in args:
                # Column names are what functions take most; write lit()
                # for a string value.
                rendered.append(_expr(a, column=not (fn == "date_trunc" and a is args[0])).sql)
            return Expr(f"{fn.upper()}({', '.join(rendered)})")
        return call


F = _Functions()


class Frame:
    """A lazy query over the lake. Steps return new frames; `count`,
    `show`, `explain`, `to_arrow`, `to_pandas` and iteration run it."""

    def __init__(self, lake, sql, order=None):
        # `sql` never ends in ORDER BY or LIMIT, so each step can wrap or
        # extend it; the order is kept apart and put last.
        self._lake = lake
        self._sql = sql
        self._order = order

    def _wrap(self, build):
        """A frame of `build(source)`, the source being this frame as a
        subquery."""
        return Frame(self._lake, build(f"({self.to_sql()}) AS _t{next(_names)}"))

    # Steps.
    def filter(self, condition):
        cond = _sql_expr(condition)
        return self._wrap(lambda src: f"SELECT * FROM {src} WHERE {cond}")

    where = filter

    def select(self, *columns):
        exprs = []
        for c in columns:
            e = _expr(c, column=True)
            exprs.append(e.sql + (f" AS {_quote(e.name)}" if e.name and e.sql != _quote(e.name) else ""))
        return self._wrap(lambda src: f"SELECT {', '.join(exprs)} FROM {src}")

    def with_column(self, name, expr):
        """Adds (or replaces) a column computed by `expr`."""
        rest = [c for c in self.columns if c != name]
        cols = ", ".join(_quote(c) for c in rest)
        sel = (cols + ", " if cols else "") + f"{_sql_expr(expr)} AS {_quote(name)}"
        return self._wrap(lambda src: f"SELECT {sel} FROM {src}")

    def group_by(self, *keys):
        return _Grouped(self, [_expr(k, column=True) for k in keys])

    def agg(self, **aggregates):
        return _Grouped(self, []).agg(**aggregates)

    def join(self, other, on, how="inner"):
        """Joins on column names (`on="User"` or a list; they appear once)."""
        how = how.upper()
        if how not in ("INNER", "LEFT", "RIGHT", "FULL", "LEFT SEMI", "LEFT ANTI"):
            raise ValueError(f"how must be inner, left, right, full, left semi or left anti, not {how.lower()!r}")
        la, ra = f"_l{next(_names)}", f"_r{next(_names)}"
        cond = "USING (" + ", ".join(_quote(c) for c in _seq(on)) + ")"
        sql = f"SELECT * FROM ({self.to_sql()}) AS {la} {how} JOIN ({other.to_sql()}) AS {ra} {cond}"
        return Frame(self._lake, sql)

    def sort(self, *keys):
        ob = ", ".join(_expr(k, column=True).sql for k in keys)
        return Frame(self._lake, self._sql, order=ob)

    order_by = sort

    def limit(self, n):
        n = int(n)
        # Sort and limit in one SELECT (a top-k), then the order again
        # outside, so the rows come back in it.
        return Frame(self._lake, f"SELECT * FROM ({self.to_sql()} LIMIT {n}) AS _t{next(_names)}",
                     order=self._order)

    def distinct(self):
        return self._wrap(lambda src: f"SELECT DISTINCT * FROM {src}")

    # What it is.
    def to_sql(self):
        """The SQL the gateway plans for this frame."""
        return self._sql + (f" ORDER BY {self._order}" if self._order else "")

    @property
    def schema(self):
        """Its Arrow schema (planned on the cluster, no rows read)."""
        return self._lake._query(f"SELECT * FROM ({self.to_sql()}) AS _s LIMIT 0").schema

    @property
    def columns(self):
        return self.schema.names

    # Running it.
    def count(self):
        """Its row count, counted on the cluster."""
        t = self._lake._query(f"SELECT COUNT(*) AS n FROM ({self.to_sql()}) AS _c")
        return t.column(0)[0].as_py()

    @property
    def num_rows(self):
        return self.count()

    def explain(self):
        """The plan the cluster runs, as text."""
        t = self._lake._query(f"EXPLAIN {self.to_sql()}")
        return "\n".join(f"{a}:\n{b}" for a, b in zip(t.column(0).to_pylist(), t.column(1).to_pylist()))

    def show(self, n=20):
        """Prints its first `n` rows (fetched from the cluster)."""
        t = self.limit(n).to_arrow()
        try:
            from IPython.display import display
            display(t.to_pandas())
        except ImportError:
            print(t.to_pandas().to_string() if hasattr(t, "to_pandas") else t)

    def to_arrow(self):
        """Runs it; the result as a pyarrow.Table."""
        return self._lake._query(self.to_sql(), progress=True)

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def to_pylist(self):
        return self.to_arrow().to_pylist()

    def column(self, name):
        return self.to_arrow().column(name)

    def __iter__(self):
        """Rows as dicts, streamed batch by batch."""
        for batch in self._lake._batches(self.to_sql()):
            yield from batch.to_pylist()

    def __repr__(self):
        sql = self.to_sql()
        return f"<Frame (lazy): {sql[:200]}{'…' if len(sql) > 200 else ''}>"


class _Grouped:
    def __init__(self, frame, keys):
        self._frame = frame
        self._keys = keys

    def agg(self, **aggregates):
        if not aggregates:
            raise ValueError("agg needs at least one aggregate, e.g. agg(n=F.count())")
        keys = [k.sql for k in self._keys]
        outs = [f"{k.sql} AS {_quote(k.name)}" if k.name else k.sql for k in self._keys]
        outs += [f"{_sql_expr(e)} AS {_quote(n)}" for n, e in aggregates.items()]
        sel = ", ".join(outs)
        group = (" GROUP BY " + ", ".join(keys)) if keys else ""
        return self._frame._wrap(lambda src: f"SELECT {sel} FROM {src}{group}")

    def count(self):
        return self.agg(count=F.count())

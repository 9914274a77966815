"""Concurrent-user load harness: N virtual users with notebook kernels.

Each virtual user (VU) is a distinct user (`vu001`, `vu002`, …; dev-mode
basic credentials, or tokens minted with `tarn token` when --key-file is
given) and loops until the run ends:

1. opens a kernel: `POST /api/kernels` (`tarn-sql`, the session size from
   --sizes in `KERNEL_TARN_SESSION_SIZE`). A refusal (HTTP 429 with
   TARN-2304 USER_LIMIT_REACHED, TARN-2303 INSUFFICIENT_VCORES) is counted
   by reason and retried after --retry-wait; it is the admission limit
   working, not a failure.
2. attaches the websocket (`/api/kernels/{id}/channels`, Jupyter messaging
   5.3 JSON frames), `kernel_info_request`;
3. runs --cells-per-kernel SQL cells drawn from the mix, each followed by a
   think time (uniform in [0.5, 1.5] × --think);
4. detaches and `DELETE`s the kernel (its lease returns), thinks, and
   starts over.

VUs start evenly over --ramp, and from then on the run lasts --duration;
after that no new cell or kernel starts, cells in flight finish (each
bounded by --cell-timeout) and every kernel is deleted. --max-cells bounds
the number of cells in all. The harness stops by itself.

Correctness: each mix query is run once at the start through Flight SQL
(pyarrow.flight, its session closed again) for the expected row count and a
checksum (integer, decimal, float, boolean and string columns, rows in any
order). Every cell's answer (the kernel's `application/vnd.dataresource+json`
bundle) must match: the true row count (`rows_total`) always, the checksum
when no row was cut. A cell that errs, times out or loses its websocket is
"lost"; one with a different answer is "wrong".

Invariants, watched throughout: `GET /v1/pools` is polled (--poll) and
must never show more than 10 interactive users (nor more than its own
`max_interactive_users`), more than 760 interactive or 240 job vCores leased
(nor more than a pool's capacity, nor more than the 1000 account vCores);
client-side, no more than 10 users may hold an admitted kernel at once
(counted from the 201 of the POST to the sending of the DELETE, an interval
inside the server's). Exits 1 if an invariant broke, an answer was wrong or
lost, or anything else failed; prints a summary and writes JSON to
bench/results/load.json (or --out).

Latency is recorded in HDR histograms (PyPI `hdrhistogram`, microseconds,
3 significant digits): per cell (execute_request sent to the idle status
after its execute_reply), per mix query, and per kernel start (POST).

Mix (--mix): `default` (built in, the demo lake) or a JSON file:
    [{"name": "count", "sql": "SELECT COUNT(*) FROM SigninLogs", "weight": 3}, ...]

Starts `tarn standalone` on the demo lake (dev mode) unless --http and
--flight are given.

    .venv/bin/python bench/load.py --users 200 --ramp 10s --duration 60s
    .venv/bin/python bench/load.py --users 12 --ramp 2s --duration 5s --think 0.2s   # smoke test
"""

import argparse
import base64
import collections
import datetime
import decimal
import hashlib
import json
import pathlib
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pyarrow as pa
import pyarrow.flight as flight
import websocket
from hdrh.histogram import HdrHistogram

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import (DEFAULT_DEMO_LAKE, DEFAULT_TARN, command_line, machine, parse_duration,  # noqa: E402
                    start_tarn, write_result)
from stream import sql_command  # noqa: E402

USER_LIMIT = 10
POOL_LIMITS = {"interactive": 760, "job": 240}
ACCOUNT_LIMIT = 1000

DEFAULT_MIX = [
    {"name": "point", "weight": 40,
     "sql": "SELECT TimeGenerated, IPAddress, ResultType FROM SigninLogs "
            "WHERE UserPrincipalName = 'megan.bowen@contoso.com' AND ResultType = '0'"},
    {"name": "aggregate", "weight": 25,
     "sql": "SELECT ResultType, COUNT(*) AS n FROM SigninLogs GROUP BY ResultType ORDER BY n DESC"},
    {"name": "count", "weight": 15, "sql": "SELECT COUNT(*) AS n FROM SecurityEvent"},
    {"name": "join", "weight": 10,
     "sql": "SELECT i.Department, COUNT(*) AS failed_signins FROM SigninLogs s "
            "JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN "
            "WHERE s.ResultType <> '0' GROUP BY i.Department ORDER BY failed_signins DESC"},
    {"name": "brute_force", "weight": 5,
     "sql": "SELECT UserPrincipalName, IPAddress, "
            "SUM(CASE WHEN ResultType = '50126' THEN 1 ELSE 0 END) AS failures, "
            "SUM(CASE WHEN ResultType = '0' THEN 1 ELSE 0 END) AS successes "
            "FROM SigninLogs GROUP BY UserPrincipalName, IPAddress "
            "HAVING SUM(CASE WHEN ResultType = '50126' THEN 1 ELSE 0 END) >= 20 "
            "AND SUM(CASE WHEN ResultType = '0' THEN 1 ELSE 0 END) > 0"},
    {"name": "lateral", "weight": 5,
     "sql": "SELECT Account, IpAddress, COUNT(DISTINCT Computer) AS hosts, "
            "MIN(TimeGenerated) AS first_seen, MAX(TimeGenerated) AS last_seen "
            "FROM SecurityEvent WHERE EventID = 4624 AND LogonType IN (3, 10) "
            "GROUP BY Account, IpAddress HAVING COUNT(DISTINCT Computer) >= 4"},
]


# --------------------------------------------------------------------------
# answers and checksums

def arrow_kind(t):
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):
        return "string"
    return None  # timestamps, dates, nested: not in the checksum (row count only)


def canon(v, kind):
    if v is None or v == "":
        return ""  # the kernel's table shows an empty string as null
    if kind == "integer":
        return str(int(v))
    if kind == "number":
        return f"{float(v):.6g}"
    if kind == "boolean":
        return "true" if v in (True, "true") else "false"
    return str(v)


def checksum(rows, cols):
    """rows: list of dicts; cols: [(name, kind)]. Order-insensitive."""
    lines = sorted("\x1f".join(canon(r.get(n), k) for n, k in cols) for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def expected_answers(uri, mix, auth_user, password):
    """Each mix query once through Flight SQL: rows and checksum."""
    client = flight.FlightClient(uri)
    tok = client.authenticate_basic_token(auth_user, password)
    opts = flight.FlightCallOptions(headers=[tok])
    out = {}
    try:
        for q in mix:
            try:
                info = client.get_flight_info(flight.FlightDescriptor.for_command(sql_command(q["sql"])), opts)
                tables = [client.do_get(ep.ticket, opts).read_all() for ep in info.endpoints]
            except flight.FlightError as e:
                raise SystemExit(f"mix query {q['name']!r} fails through Flight SQL, so it has no expected "
                                 f"answer: {str(e).splitlines()[0]}")
            table = pa.concat_tables(tables) if tables else info.schema.empty_table()
            cols = [(f.name, arrow_kind(f.type)) for f in table.schema if arrow_kind(f.type)]
            if len({n for n, _ in cols}) != len(cols):
                raise SystemExit(f"mix query {q['name']}: duplicate column names")
            rows = table.to_pylist()
            for r in rows:
                for n, _ in cols:
                    if isinstance(r[n], decimal.Decimal):
                        r[n] = float(r[n])
            out[q["name"]] = {"rows": table.num_rows, "cols": cols, "checksum": checksum(rows, cols)}
    finally:
        try:
            list(client.do_action(flight.Action("CloseSession", b""), opts))
        except Exception:
            pass
        client.close()
    return out


def check_answer(expected, content):
    """None if the execute_result content matches, else why not."""
    if content is None:
        return "no execute_result"
    bundle = content.get("data", {}).get("application/vnd.dataresource+json")
    if not bundle:
        return "no data resource in the result"
    meta = bundle.get("tarn", {})
    total, shown = meta.get("rows_total"), meta.get("rows_shown")
    if total != expected["rows"]:
        return f"{total} rows, expected {expected['rows']}"
    if shown == total:
        got = checksum(bundle.get("data", []), expected["cols"])
        if got != expected["checksum"]:
            return f"checksum {got}, expected {expected['checksum']}"
    return None


# --------------------------------------------------------------------------
# HTTP and the kernel websocket

def http(method, url, body=None, auth=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if auth:
        req.add_header("Authorization", auth)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw) if raw else None
        except ValueError:
            return e.code, {"raw": raw[:200].decode(errors="replace")}


def error_reason(status, body):
    err = (body or {}).get("error") if isinstance(body, dict) else None
    if err and "code" in err:
        return f"TARN-{err['code']} {err.get('name', '')}".strip()
    return f"HTTP {status}"


class Lost(Exception):
    """A cell whose answer never came."""


class KernelSocket:
    def __init__(self, base, kernel_id, auth, timeout):
        url = base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        self.ws = websocket.create_connection(url, header=[f"Authorization: {auth}"], timeout=timeout)
        self.session = uuid.uuid4().hex

    def send(self, msg_type, content):
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                       "username": "load", "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}))
        return msg_id

    def wait(self, msg_id, done, timeout):
        """Messages answering msg_id until done(messages) says so."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Lost(f"no reply within {timeout:g}s")
            self.ws.settimeout(left)
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                raise Lost(f"no reply within {timeout:g}s")
            except (websocket.WebSocketConnectionClosedException, OSError) as e:
                raise Lost(f"websocket closed: {e}")
            if not raw:
                raise Lost("websocket closed")
            m = json.loads(raw)
            if m.get("parent_header", {}).get("msg_id") == msg_id:
                seen.append(m)
                if done(seen):
                    return seen

    def execute(self, code, timeout):
        mid = self.send("execute_request", {"code": code, "silent": False, "store_history": True})

        def done(ms):
            types = [m["header"]["msg_type"] for m in ms]
            return "execute_reply" in types and any(
                m["header"]["msg_type"] == "status" and m["content"].get("execution_state") == "idle" for m in ms)
        ms = self.wait(mid, done, timeout)
        reply = next(m["content"] for m in ms if m["header"]["msg_type"] == "execute_reply")
        result = next((m["content"] for m in ms if m["header"]["msg_type"] == "execute_result"), None)
        return reply, result

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# shared state

class Hist:
    def __init__(self):
        self.h = HdrHistogram(1, 3_600_000_000, 3)  # microseconds, up to an hour

    def record(self, seconds):
        self.h.record_value(max(1, int(seconds * 1e6)))

    def summary(self):
        h = self.h
        n = h.get_total_count()
        ms = lambda v: round(v / 1000, 2)  # noqa: E731
        if not n:
            return {"count": 0}
        enc = h.encode()
        return {"count": n, "p50_ms": ms(h.get_value_at_percentile(50)), "p90_ms": ms(h.get_value_at_percentile(90)),
                "p99_ms": ms(h.get_value_at_percentile(99)), "p999_ms": ms(h.get_value_at_percentile(99.9)),
                "max_ms": ms(h.get_max_value()), "mean_ms": round(h.get_mean_value() / 1000, 2),
                "hdr_base64": enc.decode() if isinstance(enc, bytes) else enc}


class State:
    def __init__(self, args, mix, expected):
        self.args, self.mix, self.expected = args, mix, expected
        self.lock = threading.Lock()
        self.cells = Hist()
        self.per_query = {q["name"]: Hist() for q in mix}
        self.starts = Hist()
        self.counts = collections.Counter()
        self.refusals = collections.Counter()
        self.failures = collections.Counter()  # reason -> n (everything that makes the run fail)
        self.samples = collections.defaultdict(list)  # reason -> a few details
        self.violations = []
        self.admitted = set()
        self.max_admitted = 0
        self.cells_taken = 0
        self.stop_at = None
        self.server = {"max_interactive_users": 0, "max_leased": collections.Counter(), "polls": 0,
                       "poll_errors": 0}

    def fail(self, reason, detail=""):
        with self.lock:
            self.failures[reason] += 1
            if len(self.samples[reason]) < 5 and detail:
                self.samples[reason].append(detail[:400])

    def violation(self, text):
        with self.lock:
            if len(self.violations) < 100:
                self.violations.append(f"{time.strftime('%H:%M:%S')} {text}")
        print(f"!! INVARIANT: {text}", flush=True)

    def running(self):
        return time.monotonic() < self.stop_at

    def take_cell(self):
        with self.lock:
            if self.cells_taken >= self.args.max_cells:
                return False
            self.cells_taken += 1
            return True

    def enter(self, user):
        with self.lock:
            self.admitted.add(user)
            n = len(self.admitted)
            self.max_admitted = max(self.max_admitted, n)
        if n > USER_LIMIT:
            self.violation(f"{n} users hold admitted kernels at once (client view), limit {USER_LIMIT}")

    def leave(self, user):
        with self.lock:
            self.admitted.discard(user)


def pick(mix, rnd):
    total = sum(q["weight"] for q in mix)
    x = rnd.uniform(0, total)
    for q in mix:
        x -= q["weight"]
        if x <= 0:
            return q
    return mix[-1]


def parse_sizes(spec):
    out = []
    for part in spec.split(","):
        if part.strip():
            name, _, w = part.partition(":")
            out.append((name.strip(), float(w or 1)))
    return out


def think(st, rnd, base):
    """Sleeps 0.5..1.5 × base, cut short at the end of the run."""
    d = rnd.uniform(0.5, 1.5) * base
    end = min(time.monotonic() + d, st.stop_at)
    while time.monotonic() < end:
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


# --------------------------------------------------------------------------
# one virtual user

def virtual_user(st, i, start_at, auth):
    a = st.args
    user = f"vu{i:03d}"
    rnd = random.Random(a.seed * 100_003 + i)
    sizes = parse_sizes(a.sizes)
    while time.monotonic() < start_at:
        time.sleep(min(0.1, start_at - time.monotonic()))
    while st.running():
        size = rnd.choices([s for s, _ in sizes], [w for _, w in sizes])[0]
        t = time.perf_counter()
        try:
            status, body = http("POST", f"{a.http}/api/kernels",
                                {"name": "tarn-sql", "env": {"KERNEL_TARN_SESSION_SIZE": size}}, auth=auth)
        except Exception as e:
            st.fail("kernel start: no answer", f"{user}: {e}")
            think(st, rnd, a.retry_wait)
            continue
        if status != 201:
            reason = error_reason(status, body)
            if status == 429 and re.match(r"TARN-230[34]", reason):
                with st.lock:
                    st.refusals[reason] += 1
            else:
                st.fail(f"kernel start: {reason}", f"{user}: HTTP {status} {body}")
            think(st, rnd, a.retry_wait)
            continue
        with st.lock:
            st.starts.record(time.perf_counter() - t)
            st.counts["kernels_started"] += 1
        st.enter(user)
        kid = body["id"]
        ws = None
        try:
            ws = KernelSocket(a.http, kid, auth, a.cell_timeout)
            mid = ws.send("kernel_info_request", {})
            try:
                ws.wait(mid, lambda ms: any(m["header"]["msg_type"] == "kernel_info_reply" for m in ms),
                        a.cell_timeout)
            except Lost as e:
                st.fail("kernel_info: " + str(e).split(":")[0], f"{user}: {e}")
                raise
            for _ in range(a.cells_per_kernel):
                if not st.running() or not st.take_cell():
                    break
                q = pick(st.mix, rnd)
                t = time.perf_counter()
                try:
                    reply, result = ws.execute(q["sql"], a.cell_timeout)
                except Lost as e:
                    st.fail("lost: " + str(e).split(":")[0], f"{user} {q['name']}: {e}")
                    raise
                took = time.perf_counter() - t
                if reply.get("status") != "ok":
                    st.fail(f"lost: cell error {reply.get('ename')}", f"{user} {q['name']}: {reply.get('evalue')}")
                else:
                    why = check_answer(st.expected[q["name"]], result)
                    if why:
                        st.fail("wrong answer", f"{user} {q['name']}: {why}")
                    else:
                        with st.lock:
                            st.cells.record(took)
                            st.per_query[q["name"]].record(took)
                            st.counts["cells_ok"] += 1
                think(st, rnd, a.think)
        except Lost:
            pass
        except Exception as e:
            st.fail(f"kernel: {type(e).__name__}", f"{user}: {e}")
        finally:
            if ws:
                ws.close()
            st.leave(user)
            try:
                status, body = http("DELETE", f"{a.http}/api/kernels/{kid}", auth=auth)
                if status == 204:
                    with st.lock:
                        st.counts["kernels_deleted"] += 1
                else:
                    st.fail(f"kernel delete: {error_reason(status, body)}", f"{user} {kid}: {body}")
            except Exception as e:
                st.fail("kernel delete: no answer", f"{user} {kid}: {e}")
        think(st, rnd, a.think)


# --------------------------------------------------------------------------
# invariant watcher

def watch_pools(st, stop):
    a = st.args
    while not stop.is_set():
        try:
            status, p = http("GET", f"{a.http}/v1/pools", auth=a.monitor_auth, timeout=10)
            if status != 200:
                raise RuntimeError(f"HTTP {status} {p}")
        except Exception as e:
            with st.lock:
                st.server["poll_errors"] += 1
            if st.server["poll_errors"] <= 3:
                print(f"warning: GET /v1/pools failed: {e}", flush=True)
            stop.wait(a.poll)
            continue
        with st.lock:
            st.server["polls"] += 1
            users = p.get("interactive_users", 0)
            st.server["max_interactive_users"] = max(st.server["max_interactive_users"], users)
            st.server["limits"] = {"max_interactive_users": p.get("max_interactive_users"),
                                   "account_vcores": p.get("account_vcores"),
                                   "pools": {x["name"]: {"configured": x["configured_vcores"],
                                                         "capacity": x["capacity_vcores"]} for x in p["pools"]}}
            total = 0
            for x in p["pools"]:
                st.server["max_leased"][x["name"]] = max(st.server["max_leased"][x["name"]], x["leased_vcores"])
                total += x["leased_vcores"]
            st.server["max_leased"]["total"] = max(st.server["max_leased"]["total"], total)
        limit = min(USER_LIMIT, p.get("max_interactive_users") or USER_LIMIT)
        if users > limit:
            st.violation(f"/v1/pools shows {users} interactive users, limit {limit}")
        for x in p["pools"]:
            cap = POOL_LIMITS.get(x["name"])
            if cap is not None and x["leased_vcores"] > cap:
                st.violation(f"{x['name']} pool: {x['leased_vcores']} vCores leased, limit {cap}")
            if x["leased_vcores"] > x["capacity_vcores"]:
                st.violation(f"{x['name']} pool: {x['leased_vcores']} vCores leased, capacity {x['capacity_vcores']}")
        if total > (p.get("account_vcores") or ACCOUNT_LIMIT):
            st.violation(f"{total} vCores leased in all, account limit {p.get('account_vcores')}")
        stop.wait(a.poll)


def scrape_metrics(url):
    """{'tarn_pool_refusals_total{pool="interactive",reason="..."}': value, ...}"""
    if not url:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("tarn_pool_grants_total") or line.startswith("tarn_pool_refusals_total"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200, help="virtual users (distinct user names)")
    ap.add_argument("--ramp", default="10s", help="VUs start evenly over this time")
    ap.add_argument("--duration", default="60s", help="run time after the ramp")
    ap.add_argument("--think", default="1s", help="mean think time after a cell and after a kernel")
    ap.add_argument("--retry-wait", default="1s", help="mean wait after a refused kernel start")
    ap.add_argument("--cells-per-kernel", type=int, default=10)
    ap.add_argument("--mix", default="default", help="'default' or a JSON file [{name, sql, weight}]")
    ap.add_argument("--sizes", default="small:1", help="session sizes and weights, e.g. small:80,medium:20")
    ap.add_argument("--max-cells", type=int, default=200_000, help="bound on cells in all")
    ap.add_argument("--cell-timeout", default="120s")
    ap.add_argument("--poll", default="0.2s", help="GET /v1/pools interval")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--http", help="a running Tarn's HTTP base (with --flight)")
    ap.add_argument("--flight", help="a running Tarn's Flight SQL address (with --http)")
    ap.add_argument("--metrics", help="the coordinator's /metrics URL (known when the script starts Tarn)")
    ap.add_argument("--key-file", help="token mode: mint one token per user with `tarn token --key-file`")
    ap.add_argument("--tarn", default=DEFAULT_TARN)
    ap.add_argument("--lake", default=DEFAULT_DEMO_LAKE)
    ap.add_argument("--interactive-vcores", type=int, help="for a started standalone (default Tarn's, 32)")
    ap.add_argument("--out", help="JSON result file (default bench/results/load.json)")
    a = ap.parse_args()
    for k in ("ramp", "duration", "think", "retry_wait", "cell_timeout", "poll"):
        setattr(a, k, parse_duration(getattr(a, k)))

    mix = DEFAULT_MIX if a.mix == "default" else json.loads(pathlib.Path(a.mix).read_text())
    if isinstance(mix, dict):
        mix = mix["queries"]
    for q in mix:
        q.setdefault("weight", 1)

    tarn = None
    if not (a.http and a.flight):
        extra = []
        if a.interactive_vcores:
            extra += ["--interactive-vcores", str(a.interactive_vcores)]
        if a.key_file:
            extra += ["--auth", "token", "--auth-key-file", a.key_file]
        tarn = start_tarn(a.tarn, a.lake, extra)
        a.http, a.flight, a.metrics = tarn.http, tarn.flight, a.metrics or tarn.metrics
        print(f"[tarn] {a.flight} {a.http} (log {tarn.log})", flush=True)

    try:
        return run(a, mix)
    finally:
        if tarn:
            tarn.stop()


def auth_for(a, user):
    if a.key_file:
        tok = subprocess.run([a.tarn, "token", "--key-file", a.key_file, "--user", user, "--ttl", "12h"],
                             check=True, capture_output=True, text=True).stdout.strip()
        return f"Bearer {tok}", tok
    return "Basic " + base64.b64encode(f"{user}:dev".encode()).decode(), "dev"


def run(a, mix):
    a.monitor_auth, oracle_password = auth_for(a, "load-monitor")
    print(f"[load] expected answers for {len(mix)} mix queries through Flight SQL", flush=True)
    expected = expected_answers(a.flight, mix, "load-monitor", oracle_password)
    for q in mix:
        e = expected[q["name"]]
        print(f"  {q['name']:12s} weight {q['weight']:>4}  {e['rows']:>6} rows  checksum {e['checksum']} "
              f"over {[n for n, _ in e['cols']]}", flush=True)
    status, p = http("GET", f"{a.http}/v1/pools", auth=a.monitor_auth)
    if status == 200 and p.get("interactive_users"):
        print(f"warning: {p['interactive_users']} interactive users already hold sessions before the run", flush=True)
    auths = [auth_for(a, f"vu{i:03d}")[0] for i in range(1, a.users + 1)]

    st = State(a, mix, expected)
    metrics_before = scrape_metrics(a.metrics)
    t0 = time.monotonic()
    st.stop_at = t0 + a.ramp + a.duration
    stop = threading.Event()
    watcher = threading.Thread(target=watch_pools, args=(st, stop), daemon=True)
    watcher.start()
    vus = []
    for i in range(1, a.users + 1):
        start_at = t0 + a.ramp * (i - 1) / max(1, a.users)
        th = threading.Thread(target=virtual_user, args=(st, i, start_at, auths[i - 1]), daemon=True,
                              name=f"vu{i:03d}")
        th.start()
        vus.append(th)
    print(f"[load] {a.users} VUs, ramp {a.ramp:g}s, duration {a.duration:g}s, think {a.think:g}s, "
          f"{a.cells_per_kernel} cells per kernel", flush=True)
    last = 0
    while any(t.is_alive() for t in vus):
        now = time.monotonic()
        if now - last >= 5:
            last = now
            with st.lock:
                print(f"  t={now - t0:5.1f}s  cells ok {st.counts['cells_ok']:6d}  kernels {st.counts['kernels_started']:5d}"
                      f"  refusals {sum(st.refusals.values()):6d}  failures {sum(st.failures.values()):4d}"
                      f"  admitted now {len(st.admitted):2d}", flush=True)
        if now > st.stop_at + a.cell_timeout + 60:
            break
        time.sleep(0.2)
    wall = time.monotonic() - t0
    hung = [t.name for t in vus if t.is_alive()]
    if hung:
        st.fail("virtual user did not finish", ", ".join(hung[:20]))
    stop.set()
    watcher.join(timeout=15)
    metrics_after = scrape_metrics(a.metrics)
    _, pools_after = http("GET", f"{a.http}/v1/pools", auth=a.monitor_auth)
    if pools_after and pools_after.get("interactive_users"):
        # Every kernel was deleted: a user still counted is a leak.
        leftover = [x for x in pools_after["pools"] if x["name"] == "interactive"]
        st.fail("leak after the run", f"{pools_after['interactive_users']} interactive users, pools {leftover}")

    ok = st.counts["cells_ok"]
    lost = sum(v for k, v in st.failures.items() if k.startswith("lost"))
    wrong = st.failures.get("wrong answer", 0)
    summary = {
        "bench": "load", "command": command_line(), "machine": machine(),
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {"users": a.users, "ramp_s": a.ramp, "duration_s": a.duration, "think_s": a.think,
                   "retry_wait_s": a.retry_wait, "cells_per_kernel": a.cells_per_kernel, "sizes": a.sizes,
                   "max_cells": a.max_cells, "mix": mix, "seed": a.seed},
        "wall_s": round(wall, 2),
        "cells_ok": ok, "cells_per_s": round(ok / wall, 2) if wall else None,
        "kernels_started": st.counts["kernels_started"], "kernels_deleted": st.counts["kernels_deleted"],
        "refusals": dict(st.refusals), "failures": dict(st.failures), "failure_samples": dict(st.samples),
        "lost": lost, "wrong": wrong,
        "latency": {"cell": st.cells.summary(), "kernel_start": st.starts.summary(),
                    "per_query": {k: h.summary() for k, h in st.per_query.items()}},
        "invariants": {"violations": st.violations, "max_admitted_users_client": st.max_admitted,
                       "max_interactive_users_server": st.server["max_interactive_users"],
                       "max_leased_vcores": dict(st.server["max_leased"]), "limits": st.server.get("limits"),
                       "polls": st.server["polls"], "poll_errors": st.server["poll_errors"]},
        "expected": {k: {"rows": v["rows"], "checksum": v["checksum"]} for k, v in expected.items()},
        "server_counters": {k: metrics_after.get(k, 0) - metrics_before.get(k, 0) for k in metrics_after},
    }
    path = pathlib.Path(a.out) if a.out else None
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
    else:
        path = write_result("load", summary)

    c = summary["latency"]["cell"]
    k = summary["latency"]["kernel_start"]
    print(f"\n== load: {a.users} VUs, {wall:.1f} s ==")
    print(f"cells ok        {ok}  ({summary['cells_per_s']} cells/s)")
    if c.get("count"):
        print(f"cell latency    p50 {c['p50_ms']} ms  p90 {c['p90_ms']} ms  p99 {c['p99_ms']} ms  "
              f"p99.9 {c['p999_ms']} ms  max {c['max_ms']} ms")
    for name, h in summary["latency"]["per_query"].items():
        if h.get("count"):
            print(f"  {name:12s} n {h['count']:6d}  p50 {h['p50_ms']:8.2f} ms  p99 {h['p99_ms']:8.2f} ms")
    if k.get("count"):
        print(f"kernel start    {k['count']} started  p50 {k['p50_ms']} ms  p99 {k['p99_ms']} ms  (POST /api/kernels)")
    print(f"refusals        {dict(st.refusals) or 'none'}")
    print(f"max users       {st.max_admitted} admitted at once (client), "
          f"{st.server['max_interactive_users']} (server, {st.server['polls']} polls)")
    print(f"max leased      {dict(st.server['max_leased'])} vCores")
    if summary["server_counters"]:
        sc = summary["server_counters"]
        srv_ref = {k.split('reason="')[1].rstrip('"}'): int(v) for k, v in sc.items()
                   if k.startswith("tarn_pool_refusals_total") and 'pool="interactive"' in k and v}
        srv_grants = int(sc.get('tarn_pool_grants_total{pool="interactive"}', 0))
        print(f"server counters interactive grants {srv_grants} (client: {st.counts['kernels_started']} kernels), "
              f"refusals {srv_ref}")
        if sum(srv_ref.values()) != sum(st.refusals.values()):
            print("note: the coordinator counted a different number of refusals than this client saw "
                  "(other clients of a shared Tarn count too)")
    print(f"lost {lost}, wrong {wrong}, violations {len(st.violations)}")
    bad = bool(st.failures) or bool(st.violations)
    if bad:
        print("\n" + "!" * 72)
        for reason, n in st.failures.items():
            print(f"!! {reason}: {n}")
            for s in st.samples.get(reason, []):
                print(f"!!     {s}")
        for v in st.violations[:20]:
            print(f"!! INVARIANT {v}")
        print("!" * 72)
    print(f"\ncommand: {summary['command']}\nresults: {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

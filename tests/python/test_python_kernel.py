"""`tarn-python` kernels: a real IPython process per kernel, hosted by the
gateway in a sandbox, with `lake` and `%sql` preloaded."""

import ast
import os
import re
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

from conftest import mint
from jupyter_client_util import Kernel, http, of_type
from test_jupyter import notebook_server, websocket_via_server  # noqa: F401 - a fixture


def start(tarn, token=None, vcores=1):
    status, k, _ = http("POST", f"{tarn['http']}/api/kernels",
                        {"name": "tarn-python", "env": {"KERNEL_TARN_VCORES": str(vcores)}}, token)
    assert status == 201, k
    assert k["name"] == "tarn-python"
    return k


def result(msgs):
    """The text/plain of an execute_result, or the error as 'ename: evalue'."""
    for m in msgs:
        if m["msg_type"] == "execute_result":
            return m["content"]["data"]["text/plain"]
        if m["msg_type"] == "error":
            return f'{m["content"]["ename"]}: {m["content"]["evalue"]}'
    return None


def run(ws, code, timeout=120):
    reply, msgs = ws.execute(code, timeout=timeout)
    return reply, result(msgs), msgs


@pytest.fixture
def pykernel(tarn):
    k = start(tarn)
    ws = Kernel(tarn["http"], k["id"])
    yield tarn, k, ws
    ws.close()
    http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")


def test_both_kernelspecs_are_offered(tarn):
    status, specs, _ = http("GET", f"{tarn['http']}/api/kernelspecs")
    assert status == 200
    assert set(specs["kernelspecs"]) == {"tarn-sql", "tarn-kql", "tarn-python"}
    py = specs["kernelspecs"]["tarn-python"]["spec"]
    assert py["display_name"] == "Tarn Python" and py["language"] == "python"


def test_a_python_kernel_runs_code_and_reads_the_lake_as_its_user(pykernel):
    tarn, k, ws = pykernel
    reply, r, msgs = run(ws, "1 + 1")
    assert reply["status"] == "ok" and r == "2", msgs
    assert of_type(msgs, "status"), "iopub status messages pass through"

    _, r, _ = run(ws, "sorted(lake.list_tables())")
    assert "'SigninLogs'" in r, r
    with flight_sql.connect(tarn["uri"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM SigninLogs WHERE ResultType <> '0'")
        expected = cur.fetchone()[0]
    _, r, _ = run(ws, "df = %sql SELECT COUNT(*) AS n FROM SigninLogs WHERE ResultType <> '0'\nint(df['n'][0])")
    assert r == str(expected), r

    # A cell magic shows at most the row limit, with the true count.
    reply, _, msgs = run(ws, "%%sql\nSELECT * FROM SigninLogs")
    assert reply["status"] == "ok", msgs
    shown = [m["content"]["data"] for m in of_type(msgs, "display_data")]
    assert any("text/html" in d or "text/plain" in d for d in shown), shown
    assert any("rows" in d.get("text/markdown", "") for d in shown), shown

    # A pandas plot arrives as an image.
    reply, _, msgs = run(ws, "import pandas as pd\nax = pd.Series([1, 3, 2]).plot()\nimport matplotlib.pyplot as plt\nplt.show()")
    assert reply["status"] == "ok", msgs
    assert any("image/png" in m["content"]["data"] for m in of_type(msgs, "display_data")), \
        [m["msg_type"] for m in msgs]


def test_interrupt_and_restart(pykernel):
    tarn, k, ws = pykernel
    mid = ws.send("execute_request", {"code": "import time\nprint('sleeping', flush=True)\ntime.sleep(120)",
                                      "silent": False, "store_history": True, "user_expressions": {},
                                      "allow_stdin": False, "stop_on_error": True})
    # Interrupted once the cell's own code runs (ipykernel can lose the
    # reply of a cell interrupted while it is still being set up).
    ws.until("stream", parent=mid, timeout=30)
    t0 = time.time()
    status, _, _ = http("POST", f"{tarn['http']}/api/kernels/{k['id']}/interrupt")
    assert status == 204
    msgs = ws.until("execute_reply", parent=mid, timeout=30)
    reply = msgs[-1]["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert time.time() - t0 < 10

    _, r, _ = run(ws, "x = 41\nx + 1")
    assert r == "42"
    status, _, _ = http("POST", f"{tarn['http']}/api/kernels/{k['id']}/restart")
    assert status == 200
    # The new process has a fresh namespace, and `lake` again.
    deadline = time.time() + 60
    while True:
        reply, r, _ = run(ws, "'x' in dir(), type(lake).__name__")
        if reply["status"] == "ok" or time.time() > deadline:
            break
        time.sleep(0.5)
    assert r == "(False, 'KernelLake')", r


def test_a_cell_the_kernel_never_answers_is_answered_for_it(pykernel):
    """ipykernel drops the reply of a cell interrupted before its code
    starts: the handler catches the KeyboardInterrupt, logs it and goes
    idle, and a notebook would wait for the reply forever. The same loss is
    made on purpose here: the next request's handler raises
    KeyboardInterrupt before doing anything (then puts the real one back)."""
    tarn, k, ws = pykernel
    reply, _, msgs = run(ws, "\n".join([
        "_k = get_ipython().kernel",
        "_real = _k.shell_handlers['execute_request']",
        "async def _lossy(*args):",
        "    _k.shell_handlers['execute_request'] = _real",
        "    raise KeyboardInterrupt",
        "_k.shell_handlers['execute_request'] = _lossy",
    ]))
    assert reply["status"] == "ok", msgs
    reply, msgs = ws.execute("print('this never runs')", timeout=30)
    assert reply["status"] == "error" and "2322" in reply["ename"], reply
    assert not any(m["msg_type"] == "stream" for m in msgs), msgs
    # The kernel goes on: the next cell runs and is answered by it.
    _, r, _ = run(ws, "6 * 7")
    assert r == "42", r


def test_a_kernel_that_exits_is_reported_dead_and_its_vcores_return(tarn):
    k = start(tarn, vcores=3)
    ws = Kernel(tarn["http"], k["id"])
    status, leases, _ = http("GET", f"{tarn['http']}/v1/leases")
    assert any(l["lease_id"] == k["tarn"]["lease_id"] for l in leases["leases"]), leases
    ws.send("execute_request", {"code": "import os; os._exit(7)", "silent": False})
    seen = []
    try:
        while True:
            seen.append(ws.recv(timeout=30))
    except Exception:
        pass
    dead = [m for m in seen if m["msg_type"] == "status" and m["content"]["execution_state"] == "dead"]
    assert dead, [m["msg_type"] for m in seen]
    said = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
    assert "TARN-2319" in said and "status 7" in said, said
    status, body, _ = http("GET", f"{tarn['http']}/api/kernels/{k['id']}")
    assert status == 404 and body["error"]["code"] == 2319, body
    # Its lease went back to the pool.
    deadline = time.time() + 15
    while True:
        status, leases, _ = http("GET", f"{tarn['http']}/v1/leases")
        held = [l for l in leases["leases"] if l["lease_id"] == k["tarn"]["lease_id"]]
        if not held or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not held, held


def test_a_kernel_cannot_touch_what_its_user_may_not(tarn):
    """Each attempt from inside the kernel is refused; the same attempt
    from the test process (outside the sandbox) succeeds, so it is the
    sandbox that refuses."""
    k = start(tarn, vcores=1)
    ws = Kernel(tarn["http"], k["id"])
    try:
        lake_file = next(p for p in sorted((tarn["lake"] / "demo" / "SigninLogs").rglob("*.parquet")))
        state_key = tarn["key"]
        coord = int(tarn["coordinator"].rsplit(":", 1)[1])
        flight = int(tarn["uri"].rsplit(":", 1)[1])
        probes = {
            "lake file": f"open({str(lake_file)!r}, 'rb').read(4)",
            "state dir": f"open({os.path.dirname(state_key)!r} + '/gateway.key').read()",
            "coordinator port": f"import socket; socket.create_connection(('127.0.0.1', {coord}), timeout=2); 'reached'",
            "gateway port": f"import socket; socket.create_connection(('127.0.0.1', {flight}), timeout=2); 'reached'",
            "fork bomb": "import subprocess\nps = []\ntry:\n    for _ in range(1000):\n        ps.append(subprocess.Popen(['sleep', '30']))\nexcept OSError:\n    pass\nfinally:\n    [p.kill() for p in ps]\n    [p.wait() for p in ps]\nlen(ps)",
            "memory": "b = bytearray(6 << 30); len(b)",
        }
        seen = {name: run(ws, code)[1] for name, code in probes.items()}
        assert seen["lake file"].startswith("FileNotFoundError"), seen
        assert seen["state dir"].startswith("FileNotFoundError"), seen
        assert seen["coordinator port"].split(":")[0] in ("ConnectionRefusedError", "OSError"), seen
        assert seen["gateway port"].split(":")[0] in ("ConnectionRefusedError", "OSError"), seen
        assert int(seen["fork bomb"]) < 256, seen
        assert seen["memory"].startswith("MemoryError"), seen
        # Controls, from outside: the file, the key and the ports exist.
        assert open(lake_file, "rb").read(4) == b"PAR1"
        assert os.path.exists(os.path.join(os.path.dirname(state_key), "gateway.key"))
        import socket
        socket.create_connection(("127.0.0.1", coord), timeout=2).close()
        # The kernel still reaches the lake — through the gateway.
        _, r, _ = run(ws, "lake.read_table('SigninLogs').num_rows > 0")
        assert r == "True", r
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")


def test_lake_calls_carry_the_users_roles_not_more(writable):
    """In token mode the kernel acts as its user: a workspace the user
    holds no role in is refused as if it did not exist (TARN-2001, the
    code every door gives for it)."""
    token = mint(writable, "carol", roles=["demo=reader"])
    k = start(writable, token=token)
    ws = Kernel(writable["http"], k["id"], token=token)
    try:
        _, r, _ = run(ws, "lake.read_table('SigninLogs', 'demo').num_rows > 0")
        assert r == "True", r
        _, r, _ = run(ws, "lake.read_table('Salaries', 'hr')")
        assert r.startswith("TarnError") and "TARN-2001" in r, r
        # The kernel holds a credential of its own, not the user's token.
        _, r, _ = run(ws, f"open('/home/kernel/.tarn/credential').read() != 'Bearer ' + {token!r}")
        assert r == "True", r
        _, credential, _ = run(ws, "open('/home/kernel/.tarn/credential').read()")
        credential = ast.literal_eval(credential)
        # The lake socket in the sandbox is no way around authentication: a
        # call on it without the credential is refused; with it, it runs.
        socket_call = ("import adbc_driver_flightsql.dbapi as fs\n"
                       "def q(**kw):\n"
                       "    try:\n"
                       "        with fs.connect('grpc+unix:///run/tarn/flight.sock', autocommit=True, **kw) as c, c.cursor() as cur:\n"
                       "            cur.execute('SELECT 1'); return str(cur.fetchone()[0])\n"
                       "    except Exception as e:\n"
                       "        return str(e)[:300]\n")
        run(ws, socket_call)
        _, r, _ = run(ws, "q()")
        assert "TARN-2201" in r, r
        _, r, _ = run(ws, "q(db_kwargs={'adbc.flight.sql.authorization_header': open('/home/kernel/.tarn/credential').read()})")
        assert ast.literal_eval(r) == "1", r
        # Its lake calls ran in the kernel's own session (its lease), not
        # in another one opened beside it.
        status, listed, _ = http("GET", f"{writable['http']}/v1/sessions", token=token)
        assert status == 200 and len(listed["sessions"]) == 1, listed
        assert listed["sessions"][0]["session_id"] == k["tarn"]["session_id"], (listed, k)
    finally:
        ws.close()
        http("DELETE", f"{writable['http']}/api/kernels/{k['id']}", token=token)
    # Control, then the point: the credential worked while the kernel ran
    # (above); once it is shut down, a copy of it is refused, as is a
    # made-up one of the same shape.
    forged = "Bearer tarnk." + "0" * 64
    for header in (credential, forged):
        with flight_sql.connect(writable["uri"], db_kwargs={
                "adbc.flight.sql.authorization_header": header}, autocommit=True) as conn:
            with pytest.raises(Exception) as e, conn.cursor() as cur:
                cur.execute("SELECT 1")
        assert "TARN-2204" in str(e.value), (header, e.value)


def test_a_real_notebook_server_runs_python_through_tarn(tarn, notebook_server):
    """`jupyter server --gateway-url` starts a tarn-python kernel on Tarn and
    runs cells that use `lake`, `%sql` and a lazy frame with a join and an
    aggregate (each answer equal to the same SQL over ADBC) and a pandas
    plot."""
    nb = notebook_server
    status, specs, _ = http("GET", f"{nb['http']}/api/kernelspecs", token=nb["token"], scheme="token")
    assert status == 200 and "tarn-python" in specs["kernelspecs"], specs
    status, k, _ = http("POST", f"{nb['http']}/api/kernels", {"name": "tarn-python"}, nb["token"], "token")
    assert status == 201, (k, open(nb["log"]).read()[-2000:])
    status, mine, _ = http("GET", f"{tarn['http']}/api/kernels/{k['id']}", token=mint(tarn, "alice"))
    assert status == 200 and mine["tarn"]["user"] == "alice" and mine["name"] == "tarn-python", mine
    join = ("SELECT i.Department, COUNT(*) AS failures FROM SigninLogs s "
            "JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN "
            "WHERE s.ResultType <> '0' GROUP BY i.Department ORDER BY i.Department")
    with flight_sql.connect(tarn["uri"]) as conn, conn.cursor() as cur:
        cur.execute(join)
        expected = [tuple(r) for r in cur.fetchall()]
    assert expected
    ws = websocket_via_server(nb, k["id"])
    try:
        reply, r, msgs = run(ws, f"df = %sql {join}\nlist(df.itertuples(index=False, name=None))")
        assert reply["status"] == "ok", msgs
        assert ast.literal_eval(r) == expected, (r, expected)
        # The same as a lazy frame: joined and aggregated on the cluster.
        # The gateway logs how many rows each query handed out; during this
        # cell no query hands the kernel more than the answer's groups.
        with open(tarn["log"], "rb") as f:
            f.seek(0, os.SEEK_END)
            log_from = f.tell()
        frame = ("s = lake.read_table('SigninLogs')\n"
                 "i = lake.read_table('IdentityInfo').select(col('AccountUPN').alias('UserPrincipalName'), 'Department')\n"
                 "f = (s.filter(col('ResultType') != '0').join(i, on='UserPrincipalName')\n"
                 "      .group_by('Department').agg(failures=F.count()).sort('Department'))\n"
                 "[tuple(r.values()) for r in f]")
        reply, r, msgs = run(ws, frame)
        assert reply["status"] == "ok", msgs
        assert ast.literal_eval(r) == expected, (r, expected)
        returned = rows_returned_since(tarn["log"], log_from, "alice")
        assert returned and max(returned) == len(expected), returned
        reply, r, msgs = run(ws, "s.count()")
        assert reply["status"] == "ok", msgs
        assert int(r) > 10 * len(expected), r
        reply, _, msgs = run(ws, "ax = df.plot.bar(x='Department', y='failures')\nimport matplotlib.pyplot as plt\nplt.show()")
        assert reply["status"] == "ok", msgs
        assert any("image/png" in m["content"]["data"] for m in of_type(msgs, "display_data"))
    finally:
        ws.close()
    status, _, _ = http("DELETE", f"{nb['http']}/api/kernels/{k['id']}", token=nb["token"], scheme="token")
    assert status == 204


def rows_returned_since(log, offset, user):
    """The `rows_returned` of every query `user` ran that ended after byte
    `offset` of the gateway's log."""
    def read():
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return [int(m.group(1)) for line in text.splitlines()
                if "query stream closed" in line and f"user={user}" in line
                for m in [re.search(r"rows_returned=(\d+)", line)] if m]
    # The closing line is written as the server drops the stream, which
    # can be just after the client has read its end.
    deadline = time.monotonic() + 5
    while not read() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    return read()

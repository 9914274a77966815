"""Shared helpers for the benchmark scripts: starting `tarn standalone` on
free loopback ports, percentiles, environment facts, result files.

Every script that starts Tarn stops it again (SIGTERM, then SIGKILL after
30 s), also on Ctrl-C and on errors.
"""

import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DATA = BENCH / ".data"
DEFAULT_TARN = os.environ.get("TARN_BIN", str(ROOT / "target" / "release" / "tarn"))
DEFAULT_DEMO_LAKE = str(ROOT / "target" / "bench-lake")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tarn:
    """A running `tarn standalone` (or one given by address)."""

    def __init__(self, flight, http, metrics=None, proc=None, log=None, state=None):
        self.flight = flight      # grpc://127.0.0.1:port
        self.http = http          # http://127.0.0.1:port
        self.metrics = metrics    # http://127.0.0.1:port/metrics, when known
        self.proc = proc
        self.log = log            # kept after the run, for reading
        self.state = state        # temporary state dir, removed on stop

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.state:
            shutil.rmtree(self.state, ignore_errors=True)
            self.state = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_tarn(tarn, lake, extra=(), env=None, ready_timeout=120, attempts=3):
    """Starts `tarn standalone --lake <lake>` on free loopback ports, in
    dev mode unless `extra` says otherwise; returns a `Tarn` once
    `/readyz` answers and the log says "Tarn is ready"."""
    if not pathlib.Path(tarn).exists():
        raise SystemExit(f"{tarn} missing: build it (cargo build --release -p tarn-cli) or pass --tarn")
    last_log = None
    for attempt in range(attempts):
        flight, http, coord, metrics = free_port(), free_port(), free_port(), free_port()
        log = tempfile.NamedTemporaryFile(prefix="tarn-bench-", suffix=".log", delete=False)
        state = tempfile.mkdtemp(prefix="tarn-bench-state-")
        proc = subprocess.Popen(
            [tarn, "standalone", "--lake", str(lake),
             "--flight-addr", f"127.0.0.1:{flight}", "--http-addr", f"127.0.0.1:{http}",
             "--coordinator-addr", f"127.0.0.1:{coord}", "--metrics-addr", f"127.0.0.1:{metrics}",
             "--state-dir", state, *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), **(env or {})),
        )
        t = Tarn(f"grpc://127.0.0.1:{flight}", f"http://127.0.0.1:{http}",
                 f"http://127.0.0.1:{metrics}/metrics", proc, log.name, state)
        deadline = time.time() + ready_timeout
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{t.http}/readyz", timeout=2) as r:
                    text = open(log.name, errors="replace").read()
                    if r.status == 200 and "Tarn is ready" in text:
                        m = re.search(r"metrics\s*:\s*(http://\S+/metrics)", text)
                        if m:
                            t.metrics = m.group(1)
                        return t
            except Exception:
                pass
            time.sleep(0.05)
        t.stop()
        last_log = log.name
        # A port taken between probing and binding kills the start early:
        # retry on fresh ports.
    raise SystemExit(f"tarn standalone did not become ready; log: {last_log}\n"
                     + open(last_log, errors="replace").read()[-3000:])


def pct(xs, p):
    """Nearest-rank percentile of a list (p in 0..100)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def machine():
    """Facts about where a run happened, for result files."""
    info = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["mem_gib"] = round(kb / 1024 / 1024, 1)
    except Exception:
        pass
    try:
        info["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["dirty"] = bool(dirty)
    except Exception:
        pass
    return info


def command_line():
    """The command that ran this script, ready to paste."""
    exe = os.path.relpath(sys.executable, os.getcwd()) if sys.executable else "python"
    return " ".join([exe, *[_quote(a) for a in sys.argv]])


def _quote(a):
    return a if re.fullmatch(r"[\w./:=,@+-]+", a) else "'" + a.replace("'", "'\\''") + "'"


def write_result(name, payload):
    """Writes bench/results/<name>.json and returns its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def parse_duration(s):
    """'10s', '2m', '500ms', '1h' or a plain number of seconds -> seconds."""
    s = str(s).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?", s)
    if not m:
        raise ValueError(f"not a duration: {s!r}")
    v = float(m.group(1))
    return v * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]

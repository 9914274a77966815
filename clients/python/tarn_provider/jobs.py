"""Jobs over the gateway's REST API: the same verbs as `tarn job`.

    from tarn_provider import TarnJobs
    jobs = TarnJobs("http://127.0.0.1:8060", token="tarn....")
    job = jobs.create("failed sign-ins", "demo", sql=open("nightly.sql").read(),
                      schedule={"daily": "02:30", "timezone": "Europe/Berlin"})
    run = jobs.run(job["id"], parameters={"min_failures": 3}, wait=True)
    print(run["status"], run["result"]["tables"])
    print(jobs.logs(run["run_id"]))
"""

import json
import time
import urllib.error
import urllib.request

from .provider import TarnError

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "expired", "skipped"}


class TarnJobs:
    """Job definitions and runs of one Tarn gateway (`url`: its HTTP port)."""

    def __init__(self, url="http://127.0.0.1:8060", token=None, timeout=60):
        self._url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def _call(self, method, path, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self._url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as r:
                payload = r.read()
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                err = json.loads(payload)
            except ValueError:
                raise TarnError(0, "HTTP_ERROR", f"{e.code} {payload[:200]!r}") from None
            err = err.get("error", {})
            raise TarnError(int(err.get("code", 0)), err.get("name", ""), err.get("message", ""), err.get("fix")) from None
        if raw:
            return payload.decode()
        return json.loads(payload) if payload else None

    def create(self, name, workspace, sql=None, notebook=None, kql=None, **settings):
        """Creates a job (checked now against the catalog); returns it with its `id`.

        Its work is one of `sql` (a SQL script), `kql` (a KQL query) or
        `notebook` (an nbformat 4 document).
        `settings`: description, parameters, schedule, size, vcores, timeout, retry, enabled.
        """
        body = {"name": name, "workspace": workspace, **settings}
        if sql is not None:
            body["sql"] = sql
        if kql is not None:
            body["kql"] = kql
        if notebook is not None:
            body["notebook"] = notebook
        return self._call("POST", "/v1/jobs", body)

    def update(self, job_id, **changes):
        """Changes a job (a JSON merge patch: `None` resets a setting)."""
        return self._call("PATCH", f"/v1/jobs/{job_id}", changes)

    def list(self):
        return self._call("GET", "/v1/jobs")["jobs"]

    def show(self, job_id):
        return self._call("GET", f"/v1/jobs/{job_id}")

    def delete(self, job_id):
        self._call("DELETE", f"/v1/jobs/{job_id}")

    def renew(self, job_id):
        """Gives the job fresh credentials: your current roles."""
        return self._call("POST", f"/v1/jobs/{job_id}/renew")

    def run(self, job_id, parameters=None, wait=False, poll=0.5):
        """Runs a job now; with `wait`, returns the ended run."""
        run = self._call("POST", f"/v1/jobs/{job_id}/runs", {"parameters": parameters or {}})
        return self.wait(run["run_id"], poll) if wait else run

    def wait(self, run_id, poll=0.5, limit=None):
        """Polls a run until it ends (or `limit` seconds pass); returns it."""
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            run = self.get_run(run_id)
            if run["status"] in ENDED:
                return run
            if deadline is not None and time.monotonic() > deadline:
                return run
            time.sleep(poll)

    def runs(self, job_id):
        return self._call("GET", f"/v1/jobs/{job_id}/runs")["runs"]

    def get_run(self, run_id):
        return self._call("GET", f"/v1/job-runs/{run_id}")

    def cancel(self, run_id):
        return self._call("DELETE", f"/v1/job-runs/{run_id}")

    def retry(self, run_id):
        """Tries an ended run again: same run, next attempt; writes it made are not made twice."""
        return self._call("POST", f"/v1/job-runs/{run_id}/retry", {})

    def logs(self, run_id):
        return self._call("GET", f"/v1/job-runs/{run_id}/log", raw=True)

    def output(self, run_id):
        """The executed notebook (nbformat 4) of an ended run."""
        return self._call("GET", f"/v1/job-runs/{run_id}/output")

"""A small Jupyter messaging 5.3 client over a websocket, for the tests."""

import json
import time
import urllib.error
import urllib.request
import uuid

import websocket


def http(method, url, body=None, token=None, scheme="Bearer"):
    """(status, parsed JSON or None, headers) of one HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"{scheme} {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None), {k.lower(): v for k, v in e.headers.items()}


class Kernel:
    """One websocket to a kernel's channels."""

    def __init__(self, base_http, kernel_id, token=None, path_prefix=""):
        ws_url = base_http.replace("http://", "ws://") + f"{path_prefix}/api/kernels/{kernel_id}/channels"
        headers = [f"Authorization: Bearer {token}"] if token else []
        self.ws = websocket.create_connection(ws_url, header=headers, timeout=30)
        self.session = uuid.uuid4().hex

    def send(self, msg_type, content, channel="shell"):
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                       "username": "test", "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content,
            "channel": channel, "buffers": [],
        }))
        return msg_id

    def recv(self, timeout=30):
        self.ws.settimeout(timeout)
        m = json.loads(self.ws.recv())
        # Jupyter's own sessions put msg_id and msg_type at the top level
        # too, and nbclient / jupyter_server's gateway client read them there.
        assert m.get("msg_type") == m["header"]["msg_type"], f"top-level msg_type missing: {m}"
        assert m.get("msg_id") == m["header"]["msg_id"], f"top-level msg_id missing: {m}"
        return m

    def until(self, msg_type, parent=None, timeout=60):
        """Messages up to and including the first `msg_type` (answering `parent`)."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.recv(timeout=max(0.1, deadline - time.time()))
            seen.append(m)
            if m["header"]["msg_type"] == msg_type and (
                parent is None or m["parent_header"].get("msg_id") == parent
            ):
                return seen
        raise TimeoutError(f"no {msg_type} within {timeout}s; saw {[x['header']['msg_type'] for x in seen]}")

    def execute(self, code, timeout=120):
        """(reply content, every message of the execution)."""
        mid = self.send("execute_request", {"code": code, "silent": False, "store_history": True})
        msgs = self.until("execute_reply", mid, timeout)
        # Jupyter ends an execution with status idle on iopub.
        while not any(m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                      and m["parent_header"].get("msg_id") == mid for m in msgs):
            msgs.append(self.recv(timeout))
        mine = [m for m in msgs if m["parent_header"].get("msg_id") == mid]
        return next(m["content"] for m in mine if m["header"]["msg_type"] == "execute_reply"), mine

    def close_status(self, timeout=30):
        """(code, reason) of the server's close frame; other frames are skipped."""
        self.ws.settimeout(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                op, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketConnectionClosedException:
                return None, ""
            if op == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                return code, data[2:].decode("utf-8", "replace")
        raise TimeoutError("the websocket was not closed")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def of_type(msgs, msg_type):
    return [m for m in msgs if m["header"]["msg_type"] == msg_type]

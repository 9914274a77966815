"""The entry point of a kernel pod: ``python -m tarn_provider.pod``.

The gateway makes each `tarn-python` kernel pod from the chart's template
and puts the kernel's connection (five TCP ports and the key its messages
are signed with) in ``TARN_KERNEL_CONNECTION``. This writes it where
ipykernel reads it, sets the process limits a pod cannot set for itself,
and becomes ipykernel. Nothing else runs in the pod.

``TARN_KERNEL_IP`` (the chart sets it to the pod's address) is the address
the kernel listens on; without it, every address of the pod.
"""

import json
import os
import resource
import sys
import tempfile


def main():
    raw = os.environ.pop("TARN_KERNEL_CONNECTION", None)
    if not raw:
        sys.exit("TARN_KERNEL_CONNECTION is not set: this pod is made by a Tarn gateway")
    info = json.loads(raw)
    info["ip"] = os.environ.get("TARN_KERNEL_IP") or "0.0.0.0"
    # The root file system is read-only; HOME is the pod's own volume.
    home = os.environ.get("HOME") or tempfile.gettempdir()
    os.makedirs(home, exist_ok=True)
    os.chdir(home)
    fd, path = tempfile.mkstemp(prefix="kernel-", suffix=".json", dir=home)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    # No core files; processes and threads bounded (a pod's own pid limit
    # is a node setting this cannot rely on).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nproc = int(os.environ.pop("TARN_KERNEL_MAX_PROCESSES", "0") or 0)
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", path])


if __name__ == "__main__":
    main()

"""The scenario notebooks in examples/ run top to bottom in a tarn-python
kernel through the gateway's kernels API and websocket, each finds its
planted incident (its last cell asserts it and prints FOUND) and draws at
least one plot."""

import json
import pathlib

import pytest

from conftest import ROOT
from jupyter_client_util import Kernel, http, of_type

EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))


def test_there_are_five_scenarios():
    assert len(EXAMPLES) == 5, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_scenario_notebook_finds_its_incident(tarn, path: pathlib.Path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "tarn-python"
    status, k, _ = http("POST", f"{tarn['http']}/api/kernels",
                        {"name": "tarn-python", "env": {"KERNEL_TARN_VCORES": "2"}})
    assert status == 201, k
    ws = Kernel(tarn["http"], k["id"])
    found, images = [], 0
    try:
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            reply, msgs = ws.execute(source, timeout=300)
            assert reply["status"] == "ok", (
                f"{path.name}, cell {i}: {reply.get('ename')}: {reply.get('evalue')}")
            images += sum("image/png" in m["content"]["data"] for m in of_type(msgs, "display_data"))
            found += [m["content"]["text"] for m in of_type(msgs, "stream") if "FOUND:" in m["content"]["text"]]
    finally:
        ws.close()
        http("DELETE", f"{tarn['http']}/api/kernels/{k['id']}")
    assert found, f"{path.name} printed no FOUND line"
    assert images >= 1, f"{path.name} drew no plot"

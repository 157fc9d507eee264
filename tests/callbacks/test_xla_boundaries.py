"""Graph boundaries: `end_graph` runs torch_xla's pending graph on an XLA device, and does nothing elsewhere."""

import sys
import types

import torch

from lit_effnet.callbacks.xla import end_graph


def test_end_graph_syncs_torch_xla_on_an_xla_device_only(monkeypatch):
    # torch_xla is not in the default venv (make test-xla has it): a stand-in module records the calls.
    syncs = []
    monkeypatch.setitem(sys.modules, "torch_xla", types.SimpleNamespace(sync=lambda: syncs.append(1)))
    end_graph(torch.device("cpu"))
    end_graph(torch.device("meta"))
    assert syncs == []
    end_graph(torch.device("xla"))
    end_graph(torch.device("xla", 1))
    assert syncs == [1, 1]

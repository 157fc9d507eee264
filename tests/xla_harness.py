"""Run train.py on torch_xla's CPU device and record XLA's compiles and device-to-host reads around each graph.

    PJRT_DEVICE=CPU python -m tests.xla_harness OUT.json -- --config quickstart --accelerator tpu --devices 1 ...

Lightning's TPU check counts Google TPU chips on the PCI bus, which this machine has none of: the harness tells
it that one XLA device exists (the CPU one). Only the harness does this; the product code asks Lightning as usual.
Nothing here may reach an outside address: torch_xla asks a cloud metadata server for the TPU type unless
TPU_SKIP_MDS_QUERY and TPU_ACCELERATOR_TYPE are set, which the harness sets before importing it.

OUT.json holds "windows": the run cut at each training step's start and end, each evaluation batch's start and
validation's end, with the compiles and reads in each; "graphs": each place a graph ends (Lightning's
XLAPrecision.optimizer_step for a training step, lit_effnet's end_graph for the rest) with its window and its
compiles and reads; the totals, XLA's compile seconds and the wall time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

XLA_ENV = {"PJRT_DEVICE": "CPU", "TPU_SKIP_MDS_QUERY": "1", "TPU_ACCELERATOR_TYPE": "v4-8"}


def see_one_xla_device() -> None:
    """Make Lightning's XLA accelerator count the CPU XLA device as one TPU device."""
    from lightning.fabric.accelerators import xla as fabric_xla
    from lightning.pytorch.accelerators import XLAAccelerator

    for accelerator in (XLAAccelerator, fabric_xla.XLAAccelerator):
        accelerator.auto_device_count = staticmethod(lambda: 1)
        accelerator.is_available = staticmethod(lambda: True)


def xla_counts() -> dict[str, float]:
    """Compiles so far, their seconds, and device-to-host reads (a value read on the host: .item(), bool(), ...)."""
    import torch_xla.debug.metrics as met

    compiles = met.metric_data("CompileTime")
    return {
        "compiles": compiles[0] if compiles else 0,
        "compile_s": compiles[1] / 1e9 if compiles else 0.0,
        "reads": met.counter_value("aten::_local_scalar_dense") or 0,
    }


def _delta(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in ("compiles", "reads")}


def make_probe(out: Path):
    import lightning as L
    from lightning.pytorch.plugins.precision import xla as xla_precision

    from lit_effnet.callbacks import xla as graph_boundaries

    class XlaProbe(L.Callback):
        """Splits the run into windows (a training step; from its end to the next batch; an evaluation batch; an
        epoch's end after validation) and counts compiles and reads in each; and the graph ends themselves."""

        def __init__(self) -> None:
            self.windows: list[dict] = []
            self.graphs: list[dict] = []  # each graph end: which, at what, compiles and reads
            self.started = time.monotonic()
            self.current: dict | None = None
            self.last = xla_counts()
            self._watch_graph_ends()

        def _open(self, **label) -> None:
            now = xla_counts()
            if self.current is not None:
                self.current.update(_delta(self.last, now))
                self.windows.append(self.current)
            self.current, self.last = label, now

        def _watch_graph_ends(self) -> None:
            step, end_graph, probe = xla_precision.XLAPrecision.optimizer_step, graph_boundaries.end_graph, self

            def optimizer_step(precision, *args, **kwargs):
                before = xla_counts()
                result = step(precision, *args, **kwargs)
                probe.graphs.append({"kind": "train", **probe.current, **_delta(before, xla_counts())})
                return result

            def counted_end_graph(device):
                before = xla_counts()
                end_graph(device)
                by = sys._getframe(1).f_code.co_name  # the hook that ended the graph
                probe.graphs.append(
                    {"kind": "end_graph", **(probe.current or {}), "by": by, **_delta(before, xla_counts())}
                )

            xla_precision.XLAPrecision.optimizer_step = optimizer_step
            graph_boundaries.end_graph = counted_end_graph

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            size = int(batch[0].shape[-1])
            step = {"step": trainer.global_step + 1, "size": size}
            print(f"[step] {json.dumps(step)}", file=sys.stderr, flush=True)  # what a killed run trained
            logging = (trainer.global_step + 1) % trainer.log_every_n_steps == 0
            self._open(window="step", epoch=trainer.current_epoch, step=trainer.global_step + 1, size=size,
                       logging_step=logging)  # fmt: skip

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._open(window="after_step", epoch=trainer.current_epoch, step=trainer.global_step)

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self._open(window="eval", epoch=trainer.current_epoch, batch=batch_idx, size=int(batch[0].shape[0]))

        def on_validation_end(self, trainer, pl_module):
            self._open(window="epoch_end", epoch=trainer.current_epoch)

        def on_fit_end(self, trainer, pl_module):
            self._open(window="end")
            report = {"windows": self.windows, "graphs": self.graphs, "total": xla_counts()}
            report["wall_s"] = time.monotonic() - self.started
            out.write_text(json.dumps(report, indent=1))

    return XlaProbe()


def main(argv: list[str]) -> int:
    for key, value in XLA_ENV.items():
        os.environ.setdefault(key, value)
    out, args = Path(argv[0]), argv[argv.index("--") + 1 :]
    see_one_xla_device()
    from lit_effnet import cli

    probe = make_probe(out)
    instantiate = cli.EffNetCLI._instantiate_trainer

    def with_probe(self, config, callbacks):
        return instantiate(self, config, [*callbacks, probe])

    cli.EffNetCLI._instantiate_trainer = with_probe
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

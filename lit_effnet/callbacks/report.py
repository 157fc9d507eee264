"""What a run leaves behind for people: the errors after `trainer.test` (per-class CSV, confusion PNG), and
the validation curve of a fit as JSON lines (for studies and benchmarks that compare runs)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics.classification import MulticlassConfusionMatrix

from lit_effnet.callbacks.predictions import NamesItsImages

SHOWN = 30  # classes named in the picture; beyond 100 classes only the 30 most confused are drawn
FULL_MATRIX_UP_TO = 100


def per_class_rows(matrix: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    """class, images, top1 (its plain accuracy) and the class it is most often mistaken for."""
    rows = []
    for i, name in enumerate(classes):
        images = int(matrix[i].sum())
        wrong = matrix[i].clone()
        wrong[i] = 0
        confused = classes[int(wrong.argmax())] if wrong.sum() > 0 else ""
        top1 = float(matrix[i, i]) / images if images else float("nan")
        rows.append({"class": name, "images": images, "top1": round(top1, 6), "confused_with": confused})
    return rows


def shown_classes(matrix: torch.Tensor) -> list[int]:
    """Classes in the picture, worst accuracy first: all of them up to 100, else the 30 with most errors."""
    images = matrix.sum(1).clamp(min=1)
    accuracy = matrix.diag() / images
    chosen = range(len(matrix))
    if len(matrix) > FULL_MATRIX_UP_TO:
        errors = matrix.sum(1) - matrix.diag()
        chosen = errors.argsort(descending=True)[:SHOWN].tolist()
    return sorted(chosen, key=lambda i: (float(accuracy[i]), i))


def confusion_figure(matrix: torch.Tensor, classes: list[str]):
    """Row-normalised confusion matrix (true class per row), classes sorted by accuracy, the worst named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = shown_classes(matrix)
    sub = matrix[order][:, order].float()
    sub = sub / matrix[order].sum(1, keepdim=True).clamp(min=1)
    size = min(16.0, 4.0 + 0.12 * len(order))
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(sub.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    named = order[:SHOWN]  # the worst-classified classes carry their names
    ticks = list(range(len(named)))
    labels = [classes[i] for i in named]
    axis.set_yticks(ticks, labels, fontsize=7)
    axis.set_xticks(ticks, labels, fontsize=7, rotation=90)
    what = f"{len(order)} most confused of {len(matrix)} classes" if len(order) < len(matrix) else "all classes"
    axis.set_title(f"confusion (rows: true class, {what}, worst accuracy first)", fontsize=9)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    figure.tight_layout()
    return figure


class ErrorReport(Callback):
    """After testing: `per_class.csv` and `confusion.png` in the run's folder, the picture in TensorBoard too.

    Needs test_step to return {"logits": ...}; the confusion matrix is summed over DDP ranks.
    """

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder
        self.written: list[Path] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.confusion = MulticlassConfusionMatrix(pl_module.hparams["num_classes"]).to(pl_module.device)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.confusion.update(outputs["logits"], batch[1])

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        matrix = self.confusion.compute().cpu()
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        names = datamodule.class_names() if isinstance(datamodule, NamesItsImages) else None
        names = names or [str(i) for i in range(len(matrix))]
        folder = Path(self.folder or trainer.log_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "per_class.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["class", "images", "top1", "confused_with"])
            writer.writeheader()
            writer.writerows(per_class_rows(matrix, names))
        figure = confusion_figure(matrix, names)
        figure.savefig(folder / "confusion.png", dpi=120)
        if isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_figure("test/confusion", figure, global_step=trainer.global_step)
        else:
            import matplotlib.pyplot as plt

            plt.close(figure)
        self.written = [folder / "per_class.csv", folder / "confusion.png"]
        print(f"per-class accuracy: {self.written[0]}; confusion matrix: {self.written[1]}")


class CurveFile(Callback):
    """Appends one JSON line per validated epoch to `path`: epoch, seconds since fit start, val/* metrics.

    Training and validation time both count (in Lightning 2 validation runs before on_train_epoch_end). A
    resumed fit appends to the same file and its clock continues from the last line written.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        earlier = read_curve(self.path) if self.path.is_file() else []
        self._start = time.perf_counter() - (earlier[-1]["elapsed_s"] if earlier else 0.0)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if not trainer.is_global_zero or not metrics:
            return
        row = {"epoch": trainer.current_epoch, "elapsed_s": time.perf_counter() - self._start, **metrics}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_curve(path: str | Path) -> list[dict[str, float]]:
    """The rows a CurveFile wrote, one per epoch (the last written, when a resume repeated an epoch)."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["epoch"]] = row
    return [rows[epoch] for epoch in sorted(rows)]

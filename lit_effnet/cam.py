"""Class activation maps of differently scaled models, side by side (EfficientNet's Figure 7).

    python -m lit_effnet.cam --ckpt A.ckpt [B.ckpt ...] --files IMG [IMG ...] --out FILE.png

Grad-CAM on the last feature map (after the head conv), for each model's predicted class: the feature
channels weighted by the mean gradient of that class's logit, summed, rectified and upsampled. For our
networks (global pooling, then one linear layer) this is exactly Zhou et al.'s CAM: sum_c W[class, c] A_c.
One PNG grid: a row per image, a column per checkpoint, titled with the model and its prediction.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lit_effnet.data.datasets import load_rgb
from lit_effnet.data.transforms import Normalize, eval_transform
from lit_effnet.errors import LitEffnetError
from lit_effnet.models import EfficientNet
from lit_effnet.models.weights import load_pretrained, newest_checkpoint, read_checkpoint


def grad_cam(net: EfficientNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(maps N x H x W in [0, 1], predicted classes, their probabilities) for normalised images N x 3 x H x W."""
    net.eval()
    features = net.forward_features(images).detach().requires_grad_(True)
    logits = net.forward_head(features)
    probs, classes = logits.softmax(-1).max(-1)
    (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), features)
    maps = F.relu((grads.mean((2, 3), keepdim=True) * features).sum(1, keepdim=True))
    maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = maps.flatten(1).max(1).values.clamp(min=1e-12)
    return (maps / peak[:, None, None]).detach(), classes, probs.detach()


@dataclass
class Loaded:
    """A checkpoint's network with how its run evaluated: size, crop, normalisation, class names."""

    name: str
    net: EfficientNet
    size: int
    crop_pct: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] | None


def load(path: str | Path) -> Loaded:
    """The EMA weights of a lit-effnet checkpoint (or run folder), with its run's eval settings."""
    path = Path(path)
    if path.is_dir():
        path = newest_checkpoint(path) or path
    net = load_pretrained(path).eval()
    data = (read_checkpoint(path).get("datamodule_hyper_parameters") or {}) if path.suffix == ".ckpt" else {}
    spec = net.spec
    classes = None
    if data.get("name"):
        from lit_effnet.data import ImageDataModule

        classes = ImageDataModule(**data).class_names()
    return Loaded(
        name=f"{spec.name} (w {spec.width:g}, d {spec.depth:g})",
        net=net,
        size=data.get("eval_size") or spec.eval_size,
        crop_pct=data.get("crop_pct") or spec.crop_pct,
        mean=tuple(data.get("mean") or spec.mean),
        std=tuple(data.get("std") or spec.std),
        classes=classes,
    )


def cam_grid(checkpoints: Sequence[str | Path], files: Sequence[str | Path], out: str | Path) -> Path:
    """The PNG grid: rows are images, columns checkpoints; each cell the image with its map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [load(c) for c in checkpoints]
    figure, axes = plt.subplots(len(files), len(models), figsize=(3 * len(models), 3 * len(files)), squeeze=False)
    for row, file in enumerate(files):
        image = load_rgb(file)
        for col, model in enumerate(models):
            shown = eval_transform(model.size, crop_pct=model.crop_pct)(image=image)["image"]
            maps, classes, probs = grad_cam(model.net, Normalize(model.mean, model.std)(shown[None]))
            label = model.classes[int(classes[0])] if model.classes else str(int(classes[0]))
            axis = axes[row][col]
            axis.imshow(shown.permute(1, 2, 0).numpy())
            axis.imshow(maps[0].numpy(), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            axis.set_title(f"{model.name}\n{label} ({float(probs[0]):.2f})", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(Path(file).name, fontsize=8)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_effnet.cam", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="lit-effnet checkpoints or run folders (columns)")
    parser.add_argument("--files", nargs="+", required=True, help="images (rows)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        print(cam_grid(args.ckpt, args.files, args.out))
    except LitEffnetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

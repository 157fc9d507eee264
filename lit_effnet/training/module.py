"""LitEfficientNet: the LightningModule around a plain classification network."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from lit_effnet.errors import CheckpointError, ConfigError, WeightsMismatchError, refuse_pinned
from lit_effnet.models import create_model
from lit_effnet.models.baselines import create_baseline, is_library_name
from lit_effnet.models.data_config import DataConfig, data_config
from lit_effnet.models.efficientnet import EfficientNet
from lit_effnet.models.regularization import Regularizer
from lit_effnet.models.specs import ProgressiveRanges, ScheduleRule
from lit_effnet.models.weights import SPEC_METADATA_KEY, load_backbone, load_pretrained, spec_to_json, weight_settings
from lit_effnet.training.metrics import accuracy_metrics
from lit_effnet.training.mixing import Mixing
from lit_effnet.training.optim import (
    OptimizerName,
    ScheduleName,
    WeightDecayExclude,
    build_optimizer,
    decay_flags,
    global_batch_size,
    lr_multiplier,
    param_groups,
    scaled_lr,
)


class LitEfficientNet(LightningModule):
    """Trains a classifier with the EfficientNet papers' recipe (facts 4).

    Args:
        name: a `lit_effnet.create_model` name, or a library's network as timm:NAME or torchvision:NAME
            (lit_effnet/models/baselines.py: its width and depth on the family's own knobs); or pass `net`.
        num_classes: classifier width (the CLI takes it from the datamodule).
        net: any classification `nn.Module` (ours, timm's, torchvision's); hyperparameters do not store it.
        model_kwargs: `create_model` overrides (width, depth, dropout, drop_path_rate, bn_momentum,
            bn_eps, padding, activation, ...).
        optimizer: rmsprop_tf (the papers': TF semantics), sgd or adamw.
        lr_per_256: base LR per 256 images, scaled by the global batch (devices x batch x accumulation).
        lr: an absolute LR instead of the scaled one.
        weight_decay: L2 on the weights; `weight_decay_exclude` says what is spared: "bias_and_norm" (the
            V2 code) or "norm" (the V1 code, which decays biases too).
        lr_schedule: exponential (x decay_rate every decay_epochs, per step), cosine or constant.
        warmup_epochs: linear warmup from 0 (fractions allowed).
        label_smoothing: applied once in the loss, to hard and to mixed targets alike.
        mixup_alpha, cutmix_alpha: mixup / CutMix as the official code mixes (training/mixing.py); None: off,
            unless ProgressiveLearning schedules them.
        channels_last: run the network in NHWC memory format (default: B0's CPU training step 749 -> 568 ms,
            bench/RESULTS.md section 1; and the layout cuDNN's bf16 kernels want).
        compile: torch.compile the network for training, once per input shape (dynamic=False): with
            progressive learning one graph per stage size, plus the eval size.
        compile_backend, compile_mode: passed to torch.compile ("inductor"; e.g. "max-autotune").
        pretrained: weights to fine-tune from (all but the classifier, strictly): a lit-effnet .ckpt or run
            folder, a lit-effnet .safetensors, or a timm/torchvision .pth/.safetensors. The architecture the
            weights fix (padding, BN eps, normalisation, width...) is saved as `name` and `model_kwargs`, so a
            resume or `load_from_checkpoint` rebuilds the model without the file.
        pretrained_source: the timm/torchvision model name, where the file cannot tell it.
        pretrained_weights: from a lit-effnet .ckpt, its EMA weights ("ema") or the raw ones ("raw").
        freeze_backbone_steps: train only the classifier for this many steps, with BN statistics frozen
            (-1: throughout, a linear probe); done by the FreezeBackbone callback.
        backbone_lr_scale: LR of everything but the classifier, relative to the classifier's.
        nonfinite_loss: a NaN/inf training loss "stop"s the run naming the step (the weights are not updated
            with it), or the optimizer step is "skip"ped and counted (train/skipped_steps); the check costs one
            step; "stop" reads the device only at logging steps, epoch ends and checkpoint writes, "skip" at
            every step (as AMP's GradScaler); "ignore" turns the guard off (NonFiniteLossGuard).
    """

    def __init__(
        self,
        name: str | None = None,
        num_classes: int = 1000,
        *,
        net: nn.Module | None = None,
        model_kwargs: dict[str, Any] | None = None,
        optimizer: OptimizerName = "rmsprop_tf",
        lr_per_256: float = 0.016,
        lr: float | None = None,
        weight_decay: float = 1e-5,
        weight_decay_exclude: WeightDecayExclude = "bias_and_norm",
        momentum: float = 0.9,
        lr_schedule: ScheduleName = "exponential",
        warmup_epochs: float = 5.0,
        decay_epochs: float = 2.4,
        decay_rate: float = 0.97,
        label_smoothing: float = 0.1,
        mixup_alpha: float | None = None,
        cutmix_alpha: float | None = None,
        channels_last: bool = True,
        compile: bool = False,
        compile_backend: str = "inductor",
        compile_mode: str | None = None,
        pretrained: str | None = None,
        pretrained_source: str | None = None,
        pretrained_weights: Literal["ema", "raw"] = "ema",
        freeze_backbone_steps: int = 0,
        backbone_lr_scale: float = 1.0,
        nonfinite_loss: Literal["stop", "skip", "ignore"] = "stop",
    ) -> None:  # pragma: no mutate block (mutmut renames it; save_hyperparameters needs a frame named __init__)
        super().__init__()
        if net is not None and (name is not None or pretrained is not None):
            raise ConfigError("LitEfficientNet takes either `net` or `name` (with optional `pretrained`), not both")
        if net is None and name is None and pretrained is None:
            raise ConfigError("LitEfficientNet needs model.name (a model name), model.pretrained or `net`")
        weights, origin = None, pretrained
        if pretrained is not None:
            try:
                weights = load_pretrained(pretrained, source=pretrained_source, weights=pretrained_weights)
            except CheckpointError as err:
                raise CheckpointError(f"model.pretrained {err}") from None
            if name is not None and name != weights.spec.name:
                raise ConfigError(f"model.pretrained: {pretrained} holds {weights.spec.name}, model.name is {name}")
            # Saved as the architecture the weights fix, not as the path (see `pretrained` above).
            name, pretrained = weights.spec.name, None
            model_kwargs = {**weight_settings(weights.spec), **(model_kwargs or {})}
        self.save_hyperparameters(ignore=["net"])
        if net is None:
            try:
                build = create_baseline if is_library_name(name) else create_model
                net = build(name, num_classes=num_classes, **(model_kwargs or {}))
            except ConfigError as err:
                raise ConfigError(f"model: {err}") from None
            if weights is not None:
                load_backbone(net, weights.state_dict(), origin)
        elif getattr(net, "num_classes", num_classes) != num_classes:
            net.reset_classifier(num_classes)
        if channels_last:  # before EMA copies the module, so both share the layout
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.num_classes = num_classes
        self.regularizer = Regularizer(net)
        self.mixing = Mixing(num_classes, mixup_alpha or 0.0, cutmix_alpha or 0.0)
        self.metrics = nn.ModuleDict({"val": accuracy_metrics(num_classes), "test": accuracy_metrics(num_classes)})
        self._epoch_loss: torch.Tensor | None = None  # see on_train_start
        self._epoch_batches = 0

    # ------------------------------------------------------------------ what the network expects

    def data_config(self) -> DataConfig | None:
        """Sizes, crop, interpolation and normalisation the network was designed for (None: it does not say)."""
        return data_config(self.net)

    def classifier(self) -> nn.Module:
        """The final layer(s): timm's `get_classifier()`, ours' and torchvision's `classifier` (ResNets': `fc`)."""
        get_classifier = getattr(self.net, "get_classifier", None)
        found = (
            get_classifier() if callable(get_classifier) else None,
            getattr(self.net, "classifier", None),
            getattr(self.net, "fc", None),
        )
        head = next((h for h in found if h is not None), None)  # not `or`: an empty nn.Sequential head is falsy
        if not isinstance(head, nn.Module):
            name = type(self.net).__name__
            raise ConfigError(f"{name} has no `classifier`, `fc` or `get_classifier()` to tell its head by")
        return head

    # ------------------------------------------------------------------ progressive learning (StagedModel)

    def progressive_ranges(self, rule: ScheduleRule) -> ProgressiveRanges | None:
        return self.net.spec.progressive_ranges(rule) if isinstance(self.net, EfficientNet) else None

    def check_scheduled(self, knobs: Sequence[str]) -> None:
        model_kwargs = self.hparams.model_kwargs or {}
        pinned = {  # what the user set on the model, which a schedule would silently override
            "dropout": ("model.model_kwargs.dropout", model_kwargs.get("dropout")),
            "drop_path_rate": ("model.model_kwargs.drop_path_rate", model_kwargs.get("drop_path_rate")),
            "mixup_alpha": ("model.mixup_alpha", self.hparams.mixup_alpha),
            "cutmix_alpha": ("model.cutmix_alpha", self.hparams.cutmix_alpha),
        }
        for knob in knobs:
            if knob in ("dropout", "drop_path_rate"):
                self.regularizer.require(knob, f"progressive.{knob}")
            refuse_pinned(knob, *pinned[knob])

    def apply_stage(self, values: Mapping[str, float]) -> dict[str, float]:
        if "dropout" in values:
            self.regularizer.set_dropout(values["dropout"])
        if "drop_path_rate" in values:
            self.regularizer.set_drop_path(values["drop_path_rate"])
        if "mixup_alpha" in values:
            self.mixing.mixup_alpha = float(values["mixup_alpha"])
        if "cutmix_alpha" in values:
            self.mixing.cutmix_alpha = float(values["cutmix_alpha"])
        in_force = {
            "dropout": self.regularizer.dropout if "dropout" in values else None,
            "drop_path_rate": values.get("drop_path_rate"),
            "mixup_alpha": self.mixing.mixup_alpha,
            "cutmix_alpha": self.mixing.cutmix_alpha,
        }
        return {k: v for k, v in in_force.items() if k in values}

    # ------------------------------------------------------------------ steps

    def configure_callbacks(self) -> list[Callback]:
        from lit_effnet.callbacks.freeze import FreezeBackbone
        from lit_effnet.callbacks.nonfinite import NonFiniteLossGuard
        from lit_effnet.callbacks.xla import XlaGraphBoundaries

        callbacks: list[Callback] = [XlaGraphBoundaries()]  # does nothing off XLA
        if self.hparams.freeze_backbone_steps:
            callbacks.append(FreezeBackbone(self.hparams.freeze_backbone_steps))
        if self.hparams.nonfinite_loss != "ignore":
            callbacks.append(NonFiniteLossGuard(self.hparams.nonfinite_loss))
        return callbacks

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare_images(images))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with label smoothing; targets are class indices or (mixed) probabilities."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    def on_fit_start(self) -> None:
        h = self.hparams
        if h.compile and not getattr(self.net, "_compiled_call_impl", None):
            # After EMA made its copy (setup): the copy stays eager. State_dict keys are unchanged (in-place compile).
            import torch._dynamo

            # One static graph per (size, train/eval, last-batch) shape: more than the default 8 with 4+ stages.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
            self.net.compile(dynamic=False, backend=h.compile_backend, mode=h.compile_mode)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        if self.mixing.active:
            images, targets = self.mixing(images, targets)
        loss = self.loss(self(images), targets)
        if self._epoch_loss is not None:
            self._epoch_loss.add_(loss.detach())
            self._epoch_batches += 1
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Logged here, at the steps Lightning writes to the logger, not in training_step: a value logged in the step
        # is kept in a torchmetrics state that Lightning resets at each epoch's start, and on XLA (where the step
        # is one compiled graph) that made every epoch's first step a graph of its own. Not on the progress bar:
        # it would read the loss back from the device at every refresh (a sync).
        every = self.trainer.log_every_n_steps
        if every and self.trainer.global_step % every == 0:
            self.log("train/loss_step", outputs["loss"], on_step=True, on_epoch=False)
            self.log("train/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, on_epoch=False)

    def on_train_start(self) -> None:
        # The epoch's mean loss, summed on the device where the loss is (read once, at the epoch's end). Not
        # Lightning's on_epoch=True, for the reason above; this sum is made once and zeroed in place.
        self._epoch_loss, self._epoch_batches = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_loss is not None and self._epoch_batches:
            self.log("train/loss_epoch", self._epoch_loss / self._epoch_batches, on_step=False, on_epoch=True)
            self._epoch_loss.zero_()
            self._epoch_batches = 0
        self._end_graph()  # see on_validation_epoch_end

    def on_validation_epoch_end(self) -> None:
        # The module's epoch-end hook runs after the callbacks' and before Lightning reads the epoch's logged
        # values: on XLA, what they logged becomes one graph here, so each value read later is a small graph of
        # its own reduction, the same at every epoch (compiled once), not one made of whatever was pending.
        self._end_graph()

    def _end_graph(self) -> None:
        from lit_effnet.callbacks import xla  # the callbacks package imports this module

        xla.end_graph(self.device)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        self.log(f"{split}/loss", self.loss(logits, targets), on_epoch=True, sync_dist=True)
        metrics = self.metrics[split]
        metrics.update(logits, targets)
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, on_epoch=True, prog_bar=split == "val")
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return {"logits": self._eval_step(batch, "test")}

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Top-5 classes and probabilities of each image; `index` identifies the file."""
        images, index = batch
        probs, classes = self(images).softmax(-1).topk(min(5, self.num_classes), dim=-1)
        return {"index": index, "probs": probs, "classes": classes}

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The spec lets `load_pretrained` rebuild the network from the checkpoint alone.
        if isinstance(self.net, EfficientNet):
            checkpoint[SPEC_METADATA_KEY] = spec_to_json(self.net.spec)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Name the first tensor that does not fit, instead of load_state_dict's wall of text."""
        own = self.state_dict()
        for key, value in checkpoint.get("state_dict", {}).items():
            if key in own and tuple(own[key].shape) != tuple(value.shape):
                raise WeightsMismatchError(
                    f"checkpoint does not fit the model: {key} is {tuple(value.shape)} in the checkpoint, "
                    f"{tuple(own[key].shape)} in the model (another dataset or model.model_kwargs?)"
                )

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> dict:
        h = self.hparams
        trainer = self.trainer
        total_steps = int(trainer.estimated_stepping_batches)  # epoch-based runs: builds the train loader
        if trainer.train_dataloader is None:  # step-based runs (max_epochs -1) skip that: build it here
            trainer.fit_loop.setup_data()
        per_device = trainer.train_dataloader.batch_size
        if h.lr is not None:
            lr = h.lr
        else:
            batch = global_batch_size(trainer.world_size, per_device, trainer.accumulate_grad_batches)
            lr = scaled_lr(h.lr_per_256, batch)
        decay = decay_flags(self.net, h.weight_decay_exclude)
        head_ids = {id(p) for p in self.classifier().parameters()} if h.backbone_lr_scale != 1 else set()
        backbone = [p for p in self.net.parameters() if id(p) not in head_ids]
        head = [p for p in self.net.parameters() if id(p) in head_ids]
        groups = param_groups(backbone, decay, h.weight_decay, lr * h.backbone_lr_scale)
        groups += param_groups(head, decay, h.weight_decay, lr)
        optimizer = build_optimizer(h.optimizer, groups, lr, h.momentum)
        # Lightning steps the optimizer after every accumulate_grad_batches batches and at the epoch's end.
        steps_per_epoch = max(1, math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches))
        multiplier = partial(
            lr_multiplier,
            schedule=h.lr_schedule,
            warmup_steps=round(h.warmup_epochs * steps_per_epoch),
            total_steps=total_steps,
            decay_steps=h.decay_epochs * steps_per_epoch,
            decay_rate=h.decay_rate,
        )
        scheduler = LambdaLR(optimizer, multiplier)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

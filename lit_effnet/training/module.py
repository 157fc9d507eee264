"""LitEfficientNet: the LightningModule around a plain classification network."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_effnet.models import create_model
from lit_effnet.training.optim import (
    OptimizerName,
    ScheduleName,
    build_optimizer,
    global_batch_size,
    lr_multiplier,
    param_groups,
    scaled_lr,
)
from lit_effnet.training.transfer import backbone_and_head, load_backbone, read_pretrained


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised before the weights are touched."""


def _limit(limit: int | float, batches: int) -> int:
    """Lightning's limit_train_batches: a count or a fraction."""
    return int(limit) if isinstance(limit, int) else int(batches * limit)


def _accuracy(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc1": MulticlassAccuracy(num_classes, top_k=1),
            "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes)),
        }
    )


class LitEfficientNet(LightningModule):
    """Trains a classifier with the EfficientNet papers' recipe (facts 4).

    Args:
        name: a `lit_effnet.create_model` name; or pass `net` instead.
        num_classes: classifier width (the CLI takes it from the datamodule).
        net: any classification `nn.Module` (then `name` stays None); hyperparameters do not store it.
        model_kwargs: `create_model` overrides (width, depth, dropout, drop_path_rate, bn_momentum,
            bn_eps, padding, activation, ...).
        optimizer: rmsprop_tf (the papers': TF semantics), sgd or adamw.
        lr_per_256: base LR per 256 images, scaled by the global batch (devices x batch x accumulation).
        lr: an absolute LR instead of the scaled one.
        weight_decay: on conv/linear weights only.
        lr_schedule: exponential (x decay_rate every decay_epochs, per step), cosine or constant.
        warmup_epochs: linear warmup from 0 (fractions allowed).
        label_smoothing: also applied to mixed (soft) targets.
        mixup_alpha, cutmix_alpha: timm Mixup/CutMix; ProgressiveLearning overrides mixup_alpha per stage.
        channels_last: run the network in NHWC memory format (default: B0's CPU training step 749 -> 568 ms,
            bench/RESULTS.md section 1; and the layout cuDNN's bf16 kernels want).
        compile: torch.compile the network for training, once per input shape (dynamic=False): with
            progressive learning one graph per stage size, plus the eval size.
        compile_backend, compile_mode: passed to torch.compile ("inductor"; e.g. "max-autotune").
        pretrained: weights to fine-tune from (all but the classifier, strictly): a lit-effnet .ckpt or run
            folder, a lit-effnet .safetensors, or a timm/torchvision .pth/.safetensors. The checkpoints of
            the fine-tuning record the settings the weights need (padding, BN eps, normalisation), not the path.
        pretrained_source: the timm/torchvision model name, where the file cannot tell it.
        pretrained_weights: from a lit-effnet .ckpt, its EMA weights ("ema") or the raw ones ("raw").
        freeze_backbone_steps: train only the classifier for this many steps, with BN statistics frozen
            (-1: throughout, a linear probe).
        backbone_lr_scale: LR of everything but the classifier, relative to the classifier's.
        nonfinite_loss: a NaN/inf training loss "stop"s the run naming the step (the weights are not
            updated with it), or the optimizer step is "skip"ped and counted (train/skipped_steps); the
            check costs one device-to-host sync per step, as AMP's GradScaler does; "ignore" turns it off.
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
        momentum: float = 0.9,
        lr_schedule: ScheduleName = "exponential",
        warmup_epochs: float = 5.0,
        decay_epochs: float = 2.4,
        decay_rate: float = 0.97,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
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
    ) -> None:
        super().__init__()
        if net is not None and (name is not None or pretrained is not None):
            raise ValueError("LitEfficientNet takes either `net` or `name` (with optional `pretrained`), not both")
        if net is None and name is None and pretrained is None:
            raise ValueError("LitEfficientNet needs `name` (a model name), `pretrained` or `net` (an nn.Module)")
        self.save_hyperparameters(ignore=["net"])
        if net is None:
            net = self._build_net(name, num_classes, dict(model_kwargs or {}), pretrained)
        elif getattr(net, "num_classes", num_classes) != num_classes:
            net.reset_classifier(num_classes)
        if freeze_backbone_steps and not all(
            hasattr(net, a) for a in ("forward_features", "forward_head", "classifier")
        ):
            raise ValueError(
                "model.freeze_backbone_steps needs a net with forward_features, forward_head and classifier"
            )
        if channels_last:  # before EMA copies the module, so both share the layout
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.num_classes = num_classes
        self._backbone_in_eval = False
        self._grads_finite = True  # since the last optimizer step
        self.skipped_steps = 0
        self.metrics = nn.ModuleDict({"val": _accuracy(num_classes), "test": _accuracy(num_classes)})
        self.mixup = None
        self.set_mixup_alpha(mixup_alpha)

    def _build_net(self, name: str | None, num_classes: int, model_kwargs: dict, pretrained: str | None) -> nn.Module:
        weights = None
        if pretrained is not None:
            h = self.hparams
            weights = read_pretrained(pretrained, source=h.pretrained_source, weights=h.pretrained_weights)
            if name is not None and name != weights.model_name:
                raise ValueError(f"model.pretrained: {weights.origin} holds {weights.model_name}, model.name is {name}")
            name = weights.model_name
            model_kwargs = {**weights.settings, **model_kwargs}  # what the weights need, unless overridden
            # A resume or load_from_checkpoint rebuilds from these, without the (maybe absent) file.
            self.hparams.update(name=name, model_kwargs=model_kwargs, pretrained=None)
        try:
            net = create_model(name, num_classes=num_classes, **model_kwargs)
        except ValueError as err:
            raise ValueError(f"model: {err}") from None
        if weights is not None:
            load_backbone(net, weights)
        return net

    # ------------------------------------------------------------------ pieces

    def set_mixup_alpha(self, alpha: float) -> None:
        """Mixup strength from the next batch on (0 and no CutMix: plain hard targets)."""
        self.mixup_alpha = float(alpha)
        cutmix = self.hparams.cutmix_alpha
        if self.mixup_alpha > 0 or cutmix > 0:
            from timm.data import Mixup

            # Smoothing stays in the loss, so it applies identically with and without mixing.
            self.mixup = Mixup(
                mixup_alpha=self.mixup_alpha, cutmix_alpha=cutmix, label_smoothing=0.0, num_classes=self.num_classes
            )
        else:
            self.mixup = None

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare_images(images))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with label smoothing; targets are class indices or (mixed) probabilities."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Name the first tensor that does not fit, instead of load_state_dict's wall of text."""
        from lit_effnet.models.weights import WeightsMismatchError

        own = self.state_dict()
        for key, value in checkpoint.get("state_dict", {}).items():
            if key in own and tuple(own[key].shape) != tuple(value.shape):
                raise WeightsMismatchError(
                    f"checkpoint does not fit the model: {key} is {tuple(value.shape)} in the checkpoint, "
                    f"{tuple(own[key].shape)} in the model (another dataset or model.model_kwargs?)"
                )

    # ------------------------------------------------------------------ steps

    def on_fit_start(self) -> None:
        h = self.hparams
        if h.compile and not getattr(self.net, "_compiled_call_impl", None):
            # After EMA made its copy (setup): the copy stays eager. State_dict keys are unchanged (in-place compile).
            import torch._dynamo

            # One static graph per (size, train/eval, last-batch) shape: more than the default 8 with 4+ stages.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
            self.net.compile(dynamic=False, backend=h.compile_backend, mode=h.compile_mode)

    def backbone_frozen(self) -> bool:
        steps = self.hparams.freeze_backbone_steps
        return steps < 0 or self.global_step < steps

    def _forward_head_only(self, images: torch.Tensor) -> torch.Tensor:
        """Classifier training on a frozen feature extractor whose BN statistics stay as loaded."""
        self.net.eval()
        for head_module in (self.net.dropout, self.net.classifier):
            head_module.train()
        with torch.no_grad():
            features = self.net.forward_features(self.prepare_images(images))
        return self.net.forward_head(features)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        if self.backbone_frozen():
            logits = self._forward_head_only(images)
            self._backbone_in_eval = True
        else:
            if self._backbone_in_eval:  # the frozen phase just ended: BN and the rest train again
                self.net.train()
                self._backbone_in_eval = False
            logits = self(images)
        loss = self.loss(logits, targets)
        self._check_finite(loss)
        # Not on the progress bar: it would read the loss back from the device at every refresh (a sync).
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, on_epoch=False)
        return loss

    def _check_finite(self, loss: torch.Tensor) -> None:
        mode = self.hparams.nonfinite_loss
        if mode == "ignore":
            return
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True)
        if finite:
            return
        if mode == "stop":
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}, epoch {self.current_epoch}; "
                "the weights were not updated with it and last.ckpt holds the last finished epoch. Lower the LR "
                "(model.lr_per_256), or set model.nonfinite_loss=skip"
            )
        self._grads_finite = False

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """As Lightning's, except that a step whose loss was not finite is skipped (nonfinite_loss=skip)."""
        if optimizer_closure is not None:
            optimizer_closure()  # forward and backward of this (last accumulated) batch
        if self._grads_finite:
            optimizer.step()
        else:
            optimizer.zero_grad()
            self.skipped_steps += 1
            self._grads_finite = True
        if self.hparams.nonfinite_loss == "skip":
            self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        images, targets = batch
        logits = self(images)
        self.log(f"{split}/loss", self.loss(logits, targets), on_epoch=True, sync_dist=True)
        metrics = self.metrics[split]
        metrics.update(logits, targets)
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, on_epoch=True, prog_bar=split == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Top-5 classes and probabilities of each image; `index` identifies the file."""
        images, index = batch
        probs, classes = self(images).softmax(-1).topk(min(5, self.num_classes), dim=-1)
        return {"index": index, "probs": probs, "classes": classes}

    # ------------------------------------------------------------------ optimisation

    def base_lr(self) -> float:
        if self.hparams.lr is not None:
            return self.hparams.lr
        per_device = getattr(self.trainer.datamodule, "batch_size", None)
        if per_device is None:
            raise ValueError("model.lr_per_256 needs the datamodule's batch_size to scale by; set model.lr instead")
        batch = global_batch_size(self.trainer.world_size, per_device, self.trainer.accumulate_grad_batches)
        return scaled_lr(self.hparams.lr_per_256, batch)

    def _batches_per_epoch(self) -> float:
        batches = self.trainer.num_training_batches  # known once estimated_stepping_batches set up the loader
        if not math.isfinite(batches):  # step-based runs (max_epochs -1) skip that set-up
            datamodule = self.trainer.datamodule
            batches = len(datamodule.train_dataloader()) if datamodule is not None else 1
            batches = min(batches, _limit(self.trainer.limit_train_batches, batches))
        return float(batches)

    def configure_optimizers(self) -> dict:
        h = self.hparams
        lr = self.base_lr()
        backbone, head = backbone_and_head(self.net)
        groups = param_groups(backbone, h.weight_decay, lr * h.backbone_lr_scale) + param_groups(
            head, h.weight_decay, lr
        )
        optimizer = build_optimizer(h.optimizer, groups, lr, h.momentum)
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1.0, self._batches_per_epoch() / self.trainer.accumulate_grad_batches)
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

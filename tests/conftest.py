import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import pytest
import torch

from lit_effnet.data import ImageDataModule
from lit_effnet.models.weights import SPEC_METADATA_KEY, spec_to_json
from lit_effnet.training import LitEfficientNet

TINY_NET = {"width": 0.25, "depth": 0.25, "bn_momentum": 0.1, "drop_path_rate": 0.0}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `make mutants`, run the tests fastest first, the clean run and each mutant's alike: mutmut stops at
    the first failure (-x) and passes the tests in no fixed order, so a mutant a quick test kills would otherwise
    wait for the slow ones, and the order would change from run to run."""
    stats = Path("mutmut-stats.json")  # mutmut runs the tests inside mutants/, where it keeps this file
    if "MUTANT_UNDER_TEST" not in os.environ or not stats.exists():
        return
    seconds = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: seconds.get(item.nodeid, float("inf")))


@pytest.fixture(autouse=True)
def _two_threads():
    # `make test` (pytest-xdist) and `make mutants` run two tests at once on the two cores: one thread each, not
    # four spinning on two
    parallel = "PYTEST_XDIST_WORKER" in os.environ or "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", "")
    torch.set_num_threads(1 if parallel else 2)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a test's child process. Under `make mutants` a child runs its test's mutant, so a mutant
    it exposes is caught, but not mutmut's call recording ("stats"), which counts only the pytest process and, in a
    child started in another folder, stops the child for want of mutmut's configuration."""
    env = {**os.environ, **extra}
    if env.get("MUTANT_UNDER_TEST") == "stats":
        del env["MUTANT_UNDER_TEST"]
    return env


def lit_checkpoint(
    path: Path,
    ema: torch.nn.Module,
    raw: torch.nn.Module | None = None,
    *,
    spec: bool = True,
    drop: str | None = None,
    eval_size: int | None = None,
) -> Path:
    """A lit-effnet checkpoint with what weights are read from: the EMA weights in state_dict, the raw ones (if
    given) in current_model_state, the spec they were built from (unless spec=False), and the data's eval size (if
    given); `drop` leaves one of the network's keys out."""

    def net(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {f"net.{k}": v for k, v in model.state_dict().items() if k != drop}

    checkpoint = {"state_dict": net(ema)}
    if raw is not None:
        checkpoint["current_model_state"] = net(raw)
    if spec:
        checkpoint[SPEC_METADATA_KEY] = spec_to_json(ema.spec)
    if eval_size is not None:
        checkpoint["datamodule_hyper_parameters"] = {"eval_size": eval_size}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def tiny_module(**kwargs) -> LitEfficientNet:
    """A ~100k-parameter EfficientNetV2-B0 for the 10 digit classes."""
    defaults = dict(
        name="efficientnetv2_b0",
        num_classes=10,
        model_kwargs=TINY_NET,
        optimizer="adamw",
        lr=0.005,
        lr_schedule="constant",
        warmup_epochs=0,
    )
    return LitEfficientNet(**{**defaults, **kwargs})


def tiny_datamodule(**kwargs) -> ImageDataModule:
    defaults = dict(name="digits", batch_size=32, num_workers=0, eval_size=32, crop_pct=1.0, hflip=False)
    return ImageDataModule(**{**defaults, **kwargs})


def fast_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return L.Trainer(**{**defaults, **kwargs})

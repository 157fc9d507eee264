"""ONNX, torch.export and timm / torchvision files: each, loaded as its users would, gives our outputs."""

import json

import onnx
import onnxruntime
import pytest
import timm
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file

from lit_effnet import create_model
from lit_effnet.export import (
    METADATA_FILE,
    ExportMismatchError,
    NonFiniteModelError,
    export_checkpoint,
    export_model,
    model_from_checkpoint,
)
from lit_effnet.models.weights import SPEC_METADATA_KEY, NoCounterpartError, spec_to_json
from tests.conftest import lit_checkpoint
from tests.models.test_weights import scrambled

TINY = dict(width=0.25, depth=0.25, eval_size=32)


def tiny(padding="same", num_classes=5):
    """A ~50k-parameter V2-B0 in channels_last, as LitEfficientNet runs it; 'same' padding computes pads in Python."""
    model = scrambled(create_model("efficientnetv2_b0", num_classes=num_classes, padding=padding, **TINY))
    return model.to(memory_format=torch.channels_last)


def images(batch, size=32, seed=3):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def tiny_graph_metadata(model) -> dict[str, str]:
    """What an ONNX or torch.export file of `tiny()` says about itself (its spec goes with a graph)."""
    return {
        "lit_effnet_model": "efficientnetv2_b0", "num_classes": "5",
        "input": "float32 (N, 3, 32, 32): RGB in [0, 1], minus mean, divided by std",
        "mean": "[0.485, 0.456, 0.406]", "std": "[0.229, 0.224, 0.225]", "eval_size": "32", "crop_pct": "0.875",
        SPEC_METADATA_KEY: spec_to_json(model.spec),
    }  # fmt: skip


def assert_close(theirs, ours):
    assert theirs.shape == ours.shape
    assert (theirs - ours).abs().max() <= 1e-4 * ours.abs().max()


def ours_of(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_onnx_has_a_dynamic_batch_and_our_outputs(tmp_path):
    model = tiny()
    result = export_model(model, "onnx", tmp_path / "tiny.onnx")
    assert 0 <= float(result) <= 1e-4 * result.max_abs_output
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # one file: no external data beside it
    proto = onnx.load(str(tmp_path / "tiny.onnx"))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 32, 32]
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata == tiny_graph_metadata(model)
    opset = next(o.version for o in proto.opset_import if o.domain == "")
    assert result.target == f"ONNX opset {opset}, dynamic batch"
    assert result.load == f"onnxruntime.InferenceSession('{tmp_path / 'tiny.onnx'}').run(None, {{'images': x}})"
    session = onnxruntime.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 4):  # 4: neither the traced batch (2) nor the checked ones (1, 3)
        x = images(batch)
        assert_close(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), ours_of(model, x))
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)  # the model is left as it was


def test_torch_export_program_loads_back_for_any_batch(tmp_path):
    model = tiny()
    result = export_model(model, "torch_export", tmp_path / "tiny.pt2")
    assert float(result) <= 1e-4 * result.max_abs_output
    extra = {METADATA_FILE: ""}
    program = torch.export.load(str(tmp_path / "tiny.pt2"), extra_files=extra)
    assert json.loads(extra[METADATA_FILE]) == tiny_graph_metadata(model)
    assert result.target == "torch.export ExportedProgram, dynamic batch"
    assert result.load == f"torch.export.load('{tmp_path / 'tiny.pt2'}').module()(x)"
    for batch in (1, 3, 5):
        x = images(batch)
        assert_close(program.module()(x), ours_of(model, x))
    with pytest.raises(ValueError, match=r"\.pt2"):
        export_model(model, "torch_export", tmp_path / "tiny.export")


def test_timm_file_loads_with_create_model_pretrained(tmp_path):
    # Our default V1 (symmetric, TF BN eps 1e-3) into timm's efficientnet_b0 (eps 1e-5): eps folded into the file.
    model = scrambled(create_model("efficientnet_b0", num_classes=7, eval_size=64))
    model = model.to(memory_format=torch.channels_last)
    path = tmp_path / "b0.safetensors"
    result = export_model(model, "timm", path)
    assert result.target == "timm efficientnet_b0" and "pretrained=True" in result.summary
    loaded = timm.create_model(
        "efficientnet_b0", pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=7)
    ).eval()
    x = images(2, 64)
    assert_close(loaded(x), ours_of(model, x))
    load = (
        f"timm.create_model('efficientnet_b0', pretrained=True, pretrained_cfg_overlay={{'file': '{path}', "
        "'num_classes': 7, 'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225), 'input_size': (3, 64, 64), "
        "'crop_pct': 0.875})"
    )
    note = "BN eps 0.001 folded into running_var for timm's eps 1e-05"
    assert (result.load, result.notes, result.size, result.source) == (load, (note,), 64, "efficientnet_b0")
    assert result.summary == (
        f"exported efficientnet_b0 to {path} (timm efficientnet_b0): max |difference| {result.max_abs_diff:.2e} "
        f"(outputs up to {result.max_abs_output:.3g}) on batches of 1 and 3 at 64px; load with {load}; {note}"
    )
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata == {  # the tensors are timm's, folded: no lit-effnet spec goes with them
        "lit_effnet_model": "efficientnet_b0", "num_classes": "7",
        "input": "float32 (N, 3, 64, 64): RGB in [0, 1], minus mean, divided by std",
        "mean": "[0.485, 0.456, 0.406]", "std": "[0.229, 0.224, 0.225]", "eval_size": "64", "crop_pct": "0.875",
        "library": "timm", "model": "efficientnet_b0", "bn_eps": "1e-05", "bn_momentum": "0.1",
        "notes": json.dumps([note]), "load": load,
    }  # fmt: skip


def test_torchvision_file_loads_strictly_and_names_its_normalisation(tmp_path):
    model = scrambled(create_model("efficientnetv2_s", num_classes=6, eval_size=64))
    path = tmp_path / "v2s.safetensors"
    result = export_model(model, "torchvision", path)
    assert "normalise with mean (0.5, 0.5, 0.5), std (0.5, 0.5, 0.5)" in result.summary
    loaded = torchvision.models.get_model("efficientnet_v2_s", num_classes=6)
    loaded.load_state_dict(load_file(str(path)), strict=True)
    x = images(2, 64)
    assert_close(loaded.eval()(x), ours_of(model, x))
    load = (
        "torchvision.models.get_model('efficientnet_v2_s', num_classes=6)"
        f".load_state_dict(safetensors.torch.load_file('{path}'), strict=True)"
    )
    note = (
        "input normalisation differs from torchvision's ImageNet mean/std: normalise with mean (0.5, 0.5, 0.5), "
        "std (0.5, 0.5, 0.5)"
    )
    assert (result.target, result.load, result.notes) == ("torchvision efficientnet_v2_s", load, (note,))
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {
            "lit_effnet_model": "efficientnetv2_s", "num_classes": "6",
            "input": "float32 (N, 3, 64, 64): RGB in [0, 1], minus mean, divided by std",
            "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]", "eval_size": "64", "crop_pct": "1.0",
            "library": "torchvision", "model": "efficientnet_v2_s", "bn_eps": "0.001", "bn_momentum": "0.1",
            "notes": json.dumps([note]), "load": load,
        }  # fmt: skip


def test_a_model_without_counterpart_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(NoCounterpartError, match=r"efficientnetv2_b0 has no torchvision counterpart"):
        export_model(tiny(), "torchvision", tmp_path / "tv.safetensors")
    with pytest.raises(NoCounterpartError, match=r"width=0\.25, depth=0\.25"):
        export_model(tiny(), "timm", tmp_path / "timm.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(tiny(), "tflite", tmp_path / "m.tflite")


def test_outputs_that_differ_are_reported(tmp_path, monkeypatch):
    import lit_effnet.export as export

    original = export.to_torchvision

    def off_by_a_bit(model, fold_bn_eps=False):
        module = original(model, fold_bn_eps)
        with torch.no_grad():
            module.classifier[1].bias.add_(1e-2)
        return module

    monkeypatch.setattr(export, "to_torchvision", off_by_a_bit)
    model = scrambled(create_model("efficientnet_b0", num_classes=3, eval_size=32))
    with pytest.raises(ExportMismatchError, match=r"max \|difference\| 1\.00e-02 .* more than 0\.0001 x"):
        export_model(model, "torchvision", tmp_path / "off.safetensors")


def test_a_model_with_a_nan_weight_fails_the_check_naming_the_weight(tmp_path):
    # Every output is NaN, ours and the file's: Python's max(0.0, nan) is 0.0, so a check folding the differences
    # with it passed such a file as "max |difference| 0.00e+00".
    model = tiny()
    with torch.no_grad():
        model.head.conv.weight[0, 0, 0, 0] = float("nan")
    message = r"outputs are not finite \(non-finite values in head\.conv\.weight\)"
    # The user's weights, not our exporter, are at fault: one line and exit 2 from train.py export (LitEffnetError).
    with pytest.raises(NonFiniteModelError, match=message):
        export_model(model, "torch_export", tmp_path / "nan.pt2")
    assert (tmp_path / "nan.pt2").exists()  # kept, as the message says


def test_a_file_whose_outputs_are_nan_where_ours_are_not_fails_the_check(tmp_path, monkeypatch):
    import lit_effnet.export as export

    original = export.to_torchvision

    def nan_bias(model, fold_bn_eps=False):
        module = original(model, fold_bn_eps)
        with torch.no_grad():
            module.classifier[1].bias[0] = float("nan")
        return module

    monkeypatch.setattr(export, "to_torchvision", nan_bias)
    model = scrambled(create_model("efficientnet_b0", num_classes=3, eval_size=32))
    with pytest.raises(ExportMismatchError, match=r"max \|difference\| nan .* more than 0\.0001 x"):
        export_model(model, "torchvision", tmp_path / "nan.safetensors")


def test_checkpoint_exports_its_ema_weights_by_default(tmp_path):
    raw, ema = tiny(), tiny()
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.9)
    path = lit_checkpoint(tmp_path / "last.ckpt", ema, raw)  # as EMA training writes it
    x = images(3)
    assert (ours_of(raw, x) - ours_of(ema, x)).abs().max() > 1e-2

    result = export_checkpoint(path, "torch_export", tmp_path / "ema.pt2")
    assert_close(torch.export.load(str(tmp_path / "ema.pt2")).module()(x), ours_of(ema, x))
    assert result.summary.startswith(f"exported efficientnetv2_b0 to {tmp_path / 'ema.pt2'} (torch.export")
    assert "\n" not in result.summary and "at 32px" in result.summary

    export_checkpoint(tmp_path, "torch_export", tmp_path / "raw.pt2", weights="raw")  # a run folder: its last.ckpt
    assert_close(torch.export.load(str(tmp_path / "raw.pt2")).module()(x), ours_of(raw, x))
    with pytest.raises(ExportMismatchError, match=r"more than -1 x the largest output"):  # the tolerance reaches it
        export_checkpoint(path, "torch_export", tmp_path / "strict.pt2", rtol=-1.0)
    model = model_from_checkpoint(path)  # what the exports start from: the EMA weights, in eval mode
    assert not model.training
    assert_close(ours_of(model, x), ours_of(ema, x))


def test_the_check_is_the_same_at_every_export_and_new_folders_are_made(tmp_path):
    model = scrambled(create_model("efficientnet_b0", num_classes=3, eval_size=32))
    first = export_model(model, "torchvision", tmp_path / "new" / "folders" / "a.safetensors")
    again = export_model(model, "torchvision", tmp_path / "b.safetensors")
    assert (first.max_abs_diff, first.max_abs_output) == (again.max_abs_diff, again.max_abs_output) != (0.0, 0.0)


def test_train_py_export_writes_the_runs_ema_model_and_refuses_what_timm_cannot_build(tmp_path, monkeypatch, capsys):
    from lit_effnet.cli import main
    from lit_effnet.training import LitEfficientNet

    monkeypatch.chdir(tmp_path)
    tiny = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.max_epochs", "3",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
    assert main(["--config", "quickstart", *tiny]) == 0
    capsys.readouterr()
    export = ["export", "--config", "quickstart", "--ckpt_path", "last"]
    assert main([*export, "--format", "torch_export", "--out", "q.pt2"]) == 0
    assert "max |difference|" in capsys.readouterr().out
    last = "checkpoints/quickstart/version_0/checkpoints/last.ckpt"
    ours = LitEfficientNet.load_from_checkpoint(last).net.eval()  # the EMA weights: the checkpoint's state_dict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load("q.pt2").module()(x), ours(x), rtol=1e-4, atol=1e-5)
    assert main([*export, "--format", "timm", "--out", "q.safetensors"]) == 2  # width 0.5: no timm model
    assert "has no timm counterpart: width=0.5" in capsys.readouterr().err
    # A checkpoint whose weights went NaN is the user's input, not a bug: one line naming the weight, exit 2.
    checkpoint = torch.load(last, weights_only=False)
    stem = checkpoint["state_dict"]["net.stem.conv.weight"].contiguous()
    stem.view(-1)[0] = float("nan")
    checkpoint["state_dict"]["net.stem.conv.weight"] = stem
    torch.save(checkpoint, "nan.ckpt")
    nan_export = ["export", "--config", "quickstart", "--ckpt_path", "nan.ckpt", "--format", "torch_export"]
    assert main([*nan_export, "--out", "nan.pt2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: nan.pt2: our model's outputs are not finite (non-finite values in stem.conv.weight), so "
                   "the file cannot be checked against them (file kept)"]  # fmt: skip


def test_the_check_passes_a_difference_up_to_rtol_times_the_largest_output_and_no_further(tmp_path, monkeypatch):
    import lit_effnet.export as export

    model = scrambled(create_model("efficientnetv2_s", num_classes=3, eval_size=32))  # torchvision's BN eps: no fold
    exact = export_model(model, "torchvision", tmp_path / "exact.safetensors", rtol=0.0)  # 0 <= 0 x scale
    assert exact.fmt == "torchvision" and exact.max_abs_diff == 0.0 and exact.max_abs_output > 1.5
    original, offset = export.to_torchvision, 0.5 * 1e-4 * exact.max_abs_output

    def off_by(model, fold_bn_eps=False):
        module = original(model, fold_bn_eps)
        with torch.no_grad():
            module.classifier[1].bias.add_(offset)
        return module

    monkeypatch.setattr(export, "to_torchvision", off_by)
    close = export_model(model, "torchvision", tmp_path / "close.safetensors", rtol=1e-4)  # half the tolerance
    assert close.max_abs_diff == pytest.approx(offset, rel=1e-3)
    with pytest.raises(ExportMismatchError):
        export_model(model, "torchvision", tmp_path / "far.safetensors", rtol=0.4e-4)


def test_a_model_with_many_non_finite_weights_names_three_and_counts_the_rest(tmp_path):
    model = tiny()
    with torch.no_grad():
        names = [name for name, p in model.named_parameters() if p.dim() > 1][:5]
        for name in names:
            parameter = model.get_parameter(name)
            parameter[(0,) * parameter.dim()] = float("inf")
    with pytest.raises(NonFiniteModelError) as error:
        export_model(model, "torch_export", tmp_path / "inf.pt2")
    assert f"(non-finite values in {', '.join(names[:3])} and 2 more)" in str(error.value)


def test_finite_weights_whose_outputs_overflow_are_named_as_such(tmp_path):
    model = tiny()
    with torch.no_grad():
        model.classifier.weight.fill_(3e38)  # finite, but the logits overflow float32
    with pytest.raises(NonFiniteModelError) as error:
        export_model(model, "torch_export", tmp_path / "overflow.pt2")
    assert str(error.value) == (
        f"{tmp_path / 'overflow.pt2'}: our model's outputs are not finite (NaN or inf), so the file cannot be "
        "checked against them (file kept)"
    )

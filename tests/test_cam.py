"""python -m lit_effnet.cam: Grad-CAM of the predicted class, and the grid of checkpoints over images."""

import numpy as np
import pytest
import torch
from PIL import Image

from lit_effnet import create_model
from lit_effnet.cam import grad_cam, main
from lit_effnet.cli import main as train_py


def test_grad_cam_of_a_pooled_linear_head_is_the_class_activation_map():
    # With global pooling and one linear layer, d logit_k / d A_c = W[k, c] / (h w) everywhere, so Grad-CAM is
    # Zhou et al.'s CAM, relu(sum_c W[k, c] A_c), up to scale: computed here from the weights, not from gradients.
    torch.manual_seed(0)
    net = create_model("efficientnetv2_b0", num_classes=5, width=0.25, depth=0.25).eval()
    images = torch.randn(2, 3, 64, 64)
    maps, classes, probs = grad_cam(net, images)
    with torch.no_grad():
        features = net.forward_features(images)
        expected = torch.einsum("nchw,nc->nhw", features, net.classifier.weight[classes]).relu()
        expected = torch.nn.functional.interpolate(expected[:, None], size=(64, 64), mode="bilinear")[:, 0]
        expected = expected / expected.flatten(1).max(1).values[:, None, None]
        assert torch.equal(classes, net(images).argmax(-1))
        assert torch.allclose(probs, net(images).softmax(-1).max(-1).values)
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-4)
    assert maps.shape == (2, 64, 64) and float(maps.min()) >= 0 and float(maps.amax(dim=(1, 2)).min()) == 1.0


@pytest.fixture
def two_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--trainer.max_epochs", "3", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
    folders = []
    for width in (0.25, 0.5):
        root = f"w{width}"
        kwargs = f'{{"width": {width}, "depth": 0.25, "bn_momentum": 0.1, "drop_path_rate": 0.0}}'
        argv = ["--config", "quickstart", "--model.model_kwargs", kwargs, "--trainer.default_root_dir", root, *tiny]
        assert train_py(argv) == 0
        folders.append(str(tmp_path / root / "quickstart"))
    return folders


def test_the_grid_has_a_row_per_image_and_a_column_per_checkpoint(tmp_path, two_checkpoints, capsys):
    files = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        files.append(str(path))
    assert main(["--ckpt", *two_checkpoints, "--files", *files, "--out", "cams.png"]) == 0
    width, height = Image.open(tmp_path / "cams.png").size
    assert (width, height) == (2 * 3 * 110, 3 * 3 * 110)  # figsize 3 in per cell, 110 dpi


def test_a_missing_checkpoint_is_one_line(capsys, tmp_path):
    assert main(["--ckpt", str(tmp_path / "nope.ckpt"), "--files", "x.png", "--out", "c.png"]) == 2
    assert "nope.ckpt: no such file" in capsys.readouterr().err

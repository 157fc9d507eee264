"""`trainer.test` and `trainer.predict` on LitEfficientNet: what they compute, checked against the model by hand."""

import pytest
import torch

from tests.conftest import fast_trainer, tiny_datamodule, tiny_module
from tests.data.fixtures import write_imagefolder


def test_test_reports_the_top1_of_the_eval_mode_model_and_predict_its_top5_per_file(tmp_path):
    torch.manual_seed(0)
    module, data = tiny_module(), tiny_datamodule(batch_size=50)
    trainer = fast_trainer(tmp_path, limit_test_batches=2)
    (result,) = trainer.test(module, data, verbose=False)
    module.eval()
    correct = total = 0
    with torch.no_grad():
        for k, batch in enumerate(data.test_dataloader()):
            if k == 2:
                break
            images, labels = data.on_after_batch_transfer(batch, 0)
            correct += int((module(images).argmax(-1) == labels).sum())
            total += len(labels)
    assert total == 100 and result["test/acc1"] == pytest.approx(correct / total, abs=1e-6)

    write_imagefolder(tmp_path / "files", classes=("a",), per_class=3)
    files = sorted(str(p) for p in (tmp_path / "files" / "train" / "a").glob("*.jpg"))
    data = tiny_datamodule(predict_files=files, eval_batch_size=2)
    (first, second) = trainer.predict(module, data)
    assert first["index"].tolist() == [0, 1] and second["index"].tolist() == [2]
    images, _ = data.on_after_batch_transfer(next(iter(data.predict_dataloader())), 0)
    with torch.no_grad():
        probs, classes = module(images).softmax(-1).topk(5, dim=-1)
    assert torch.equal(first["classes"], classes) and torch.allclose(first["probs"], probs)

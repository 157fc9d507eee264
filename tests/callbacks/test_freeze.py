"""FreezeBackbone (model.freeze_backbone_steps): the classifier trains alone, BN statistics stay as loaded."""

import lightning as L
import timm
import torch

from lit_effnet.training import LitEfficientNet
from tests.conftest import fast_trainer, tiny_datamodule, tiny_module


class _Snapshots(L.Callback):
    def __init__(self):
        self.states = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        state = {k: v.clone() for k, v in pl_module.net.state_dict().items()}
        self.states.append((trainer.global_step, state))


def _changed(before, after, classifier):
    keys = [k for k in before if ("classifier" in k) == classifier and "num_batches" not in k]
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_frozen_backbone_keeps_weights_and_bn_statistics_until_it_is_released(tmp_path):
    snapshots = _Snapshots()
    module = tiny_module(freeze_backbone_steps=2, lr=0.01)
    initial = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer = fast_trainer(tmp_path, max_epochs=1, limit_train_batches=4, callbacks=[snapshots])
    trainer.fit(module, tiny_datamodule())
    (_, after_1), (_, after_2), (_, after_3) = (s for s in snapshots.states[:3])
    assert not _changed(initial, after_2, classifier=False)  # weights and running stats untouched for 2 steps
    assert _changed(initial, after_1, classifier=True)  # while the classifier learns
    assert _changed(after_2, after_3, classifier=False)  # then the whole network trains


def test_linear_probe_never_changes_the_backbone(tmp_path):
    module = tiny_module(freeze_backbone_steps=-1, lr=0.01)
    initial = {k: v.clone() for k, v in module.net.state_dict().items()}
    fast_trainer(tmp_path, max_epochs=2).fit(module, tiny_datamodule())
    assert not _changed(initial, module.net.state_dict(), classifier=False)
    assert _changed(initial, module.net.state_dict(), classifier=True)


def test_a_timm_network_is_frozen_all_but_its_classifier(tmp_path):
    module = LitEfficientNet(net=timm.create_model("resnet18", num_classes=10), num_classes=10, lr=0.01,
                             freeze_backbone_steps=-1)  # fmt: skip
    initial = {k: v.clone() for k, v in module.net.state_dict().items()}
    fast_trainer(tmp_path, max_epochs=1).fit(module, tiny_datamodule())
    after = module.net.state_dict()
    body = [k for k in initial if not k.startswith("fc.") and "num_batches" not in k]
    assert all(torch.equal(initial[k], after[k]) for k in body)
    assert not torch.equal(initial["fc.weight"], after["fc.weight"])

"""ErrorReport's tables and picture, and CurveFile's per-epoch lines."""

import json

import torch

from lit_effnet.callbacks.report import confusion_figure, per_class_rows, read_curve, shown_classes


def test_per_class_rows_give_images_plain_accuracy_and_the_class_most_mistaken_for():
    matrix = torch.tensor([[8, 2, 0], [1, 0, 3], [0, 0, 5]])  # rows: true class, columns: predicted
    rows = per_class_rows(matrix, ["a", "b", "c"])
    assert [(r["class"], r["images"], r["top1"], r["confused_with"]) for r in rows] == [
        ("a", 10, 0.8, "b"), ("b", 4, 0.0, "c"), ("c", 5, 1.0, ""),
    ]  # fmt: skip


def test_up_to_100_classes_all_are_shown_worst_first_beyond_only_the_30_most_confused():
    torch.manual_seed(0)
    small = torch.diag(torch.arange(1, 11)) + 1  # class 0 worst (1 right of 11), class 9 best (10 of 20)
    assert shown_classes(small) == list(range(10))
    large = torch.diag(torch.full((150,), 10))
    large[7, 3] = large[42, 1] = 50  # two classes with many errors
    shown = shown_classes(large)
    assert len(shown) == 30 and shown[:2] == [7, 42]  # the 30 with most errors, worst accuracy first
    figure = confusion_figure(large, [f"class{i}" for i in range(150)])
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[:2] == ["class7", "class42"] and len(labels) == 30


def test_read_curve_keeps_the_last_line_of_an_epoch_a_resume_repeated(tmp_path):
    path = tmp_path / "curve.jsonl"
    lines = [{"epoch": 0, "elapsed_s": 1.0, "val/acc1": 0.1}, {"epoch": 1, "elapsed_s": 2.0, "val/acc1": 0.2},
             {"epoch": 1, "elapsed_s": 3.0, "val/acc1": 0.3}]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [r["val/acc1"] for r in read_curve(path)] == [0.1, 0.3]

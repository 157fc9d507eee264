import pytest

from lit_effnet.training.progressive import ProgressiveSchedule

# EfficientNetV2 Table 6, V2-S (facts 3): size 128 -> 300, RandAug 5 -> 10, mixup 0 -> 0, dropout 0.1 -> 0.3.
V2_S = ProgressiveSchedule(
    num_stages=4, image_size=(128, 300), dropout=(0.1, 0.3), randaug_magnitude=(5, 10), mixup_alpha=(0, 0)
)


def test_four_stage_values_interpolate_linearly_from_first_to_exact_targets():
    stages = [V2_S.settings(i) for i in range(4)]
    assert [s.image_size for s in stages] == [128, 184, 240, 300]  # 185.3 and 242.7 rounded to multiples of 8
    assert [s.dropout for s in stages] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert [s.randaug_magnitude for s in stages] == pytest.approx([5, 5 + 5 / 3, 5 + 10 / 3, 10])
    assert [s.mixup_alpha for s in stages] == [0, 0, 0, 0]
    assert stages[-1].image_size == 300  # the last stage is exactly the target, even when not a multiple of 8


def test_v2_l_mixup_ramps_to_its_target():
    v2_l = ProgressiveSchedule(num_stages=4, image_size=(128, 380), mixup_alpha=(0, 0.5))
    assert [v2_l.settings(i).mixup_alpha for i in range(4)] == pytest.approx([0, 1 / 6, 1 / 3, 0.5])


def test_stages_split_the_epochs_into_near_equal_parts():
    assert V2_S.first_epochs(350) == [0, 88, 175, 263]  # ~87 epochs each, as in the paper
    assert [V2_S.stage_at(e, 8) for e in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [V2_S.stage_at(e, 10) for e in range(10)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]


def test_one_stage_means_the_targets_throughout():
    off = ProgressiveSchedule(num_stages=1, image_size=(128, 300), dropout=(0.1, 0.3))
    assert {off.stage_at(e, 5) for e in range(5)} == {0}
    assert (off.settings(0).image_size, off.settings(0).dropout) == (300, 0.3)


def test_fewer_epochs_than_stages_is_an_error_naming_both_keys():
    with pytest.raises(ValueError, match=r"trainer.max_epochs \(3\).*progressive.num_stages \(4\)"):
        V2_S.stage_at(0, 3)


def test_size_multiple_is_configurable():
    schedule = ProgressiveSchedule(num_stages=3, image_size=(100, 200), size_multiple=32)
    assert [schedule.settings(i).image_size for i in range(3)] == [96, 160, 200]

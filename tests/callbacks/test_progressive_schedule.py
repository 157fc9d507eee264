"""The pure progressive schedule: the paper's rule and Table 6, the official code's rule, random resize."""

import numpy as np
import pytest

from lit_effnet.callbacks.progressive import ProgressiveSchedule
from lit_effnet.errors import ConfigError
from lit_effnet.models import VARIANTS

V2_S, V2_L = VARIANTS["efficientnetv2_s"], VARIANTS["efficientnetv2_l"]


def paper(spec, **kw):
    return ProgressiveSchedule.resolve(spec.progressive_ranges("paper"), num_stages=4, **kw)


def official(spec, **kw):
    return ProgressiveSchedule.resolve(spec.progressive_ranges("official"), num_stages=4, rule="official", **kw)


def column(schedule, key):
    return [getattr(s, key) for s in schedule.stages()]


def test_paper_rule_with_table_6_for_v2_s():
    # Table 6, V2-S: size 128 -> 300, RandAugment 5 -> 15, mixup 0 -> 0, dropout 0.1 -> 0.3; linear over 4
    # stages, earlier sizes rounded to multiples of 8: 128, 185.3 -> 184, 242.7 -> 240, 300.
    s = paper(V2_S)
    assert column(s, "image_size") == [128, 184, 240, 300]
    assert column(s, "randaug_magnitude") == pytest.approx([5, 5 + 10 / 3, 5 + 20 / 3, 15])
    assert column(s, "dropout") == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert column(s, "mixup_alpha") == [0, 0, 0, 0] and column(s, "cutmix_alpha") == [None] * 4


def test_paper_rule_with_table_6_for_v2_l():
    # V2-L: size 128 -> 380, RandAugment 5 -> 25, mixup 0 -> 0.4, dropout 0.1 -> 0.5.
    s = paper(V2_L)
    assert column(s, "image_size") == [128, 216, 296, 380]  # 212 -> 216 (ties round up), 296
    assert column(s, "randaug_magnitude") == pytest.approx([5, 5 + 20 / 3, 5 + 40 / 3, 25])
    assert column(s, "mixup_alpha") == pytest.approx([0, 0.4 / 3, 0.8 / 3, 0.4])
    assert column(s, "dropout") == pytest.approx([0.1, 0.1 + 0.4 / 3, 0.1 + 0.8 / 3, 0.5])


def test_official_rule_reproduces_automls_training_loop_for_v2_s_and_v2_l():
    # automl main.py: size int(128 + (S - 128) * (i + 1) / 4), S the train size; RandAugment, mixup and CutMix
    # np.linspace(5 | 0 | 0, target, 4) with targets from effnetv2_configs (S: 10, 0, 0; L: 20, 0.5, 0.5);
    # dropout not scheduled.
    s = official(V2_S)
    assert column(s, "image_size") == [171, 214, 257, 300]
    assert column(s, "randaug_magnitude") == pytest.approx(list(np.linspace(5, 10, 4)))
    assert column(s, "mixup_alpha") == [0, 0, 0, 0] and column(s, "dropout") == [None] * 4
    s = official(V2_L)
    assert column(s, "image_size") == [192, 256, 320, 384]
    assert column(s, "randaug_magnitude") == pytest.approx(list(np.linspace(5, 20, 4)))
    assert column(s, "mixup_alpha") == pytest.approx(list(np.linspace(0, 0.5, 4)))
    assert column(s, "cutmix_alpha") == pytest.approx(list(np.linspace(0, 0.5, 4)))


def test_variants_without_a_table_6_row_use_their_official_ranges_under_the_paper_rule():
    xl, b0 = VARIANTS["efficientnetv2_xl"], VARIANTS["efficientnetv2_b0"]
    assert xl.progressive_paper is None and xl.progressive_ranges("paper") == xl.progressive_official
    assert paper(xl).image_size == (128, 384) and paper(xl).randaug_magnitude == (5, 20)
    # V2-B0..B3 were trained with V1's AutoAugment: no RandAugment range to schedule.
    assert paper(b0).image_size == (128, 192) and paper(b0).randaug_magnitude is None
    assert VARIANTS["efficientnet_b0"].progressive_ranges("paper") is None  # V1 trains at one size


def test_a_users_range_wins_over_the_models_and_none_is_filled_from_it():
    s = ProgressiveSchedule.resolve(V2_S.progressive_paper, num_stages=2, dropout=(0.0, 0.0))
    assert s.dropout == (0.0, 0.0) and s.image_size == (128, 300) and s.randaug_magnitude == (5, 15)


def test_stages_split_the_epochs_into_near_equal_parts():
    s = paper(V2_S)
    assert [s.stage_at(e, 8) for e in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [s.stage_at(e, 10) for e in range(10)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert [row["epochs"] for row in s.describe(350)] == [[0, 87], [88, 174], [175, 262], [263, 349]]


def test_describe_gives_each_stage_its_epochs_and_a_step_based_run_an_open_end():
    two = ProgressiveSchedule(num_stages=2, image_size=(16, 32))
    assert [row["epochs"] for row in two.describe(4)] == [[0, 1], [2, 3]]
    one = ProgressiveSchedule(num_stages=1, image_size=(16, 32))
    assert [row["epochs"] for row in one.describe(1)] == [[0, 0]]
    for max_epochs in (-1, None):  # step-based (trainer.max_epochs -1): no last epoch
        assert [row["epochs"] for row in one.describe(max_epochs)] == [[0, None]]


def test_one_stage_means_the_targets_throughout_for_both_rules():
    for rule in ("paper", "official"):
        s = ProgressiveSchedule.resolve(V2_L.progressive_ranges(rule), num_stages=1, rule=rule)
        assert {s.stage_at(e, 5) for e in range(5)} == {0}
        assert s.settings(0).image_size == (380 if rule == "paper" else 384)


def test_fewer_epochs_than_stages_is_an_error_naming_both_keys():
    with pytest.raises(ConfigError, match=r"trainer.max_epochs \(3\).*progressive.num_stages \(4\)"):
        paper(V2_S).stage_at(0, 3)


def test_size_multiple_is_configurable():
    s = ProgressiveSchedule(num_stages=3, image_size=(100, 200), size_multiple=32)
    assert column(s, "image_size") == [96, 160, 200]


def test_random_resize_draws_are_a_pure_function_of_seed_and_step_and_cover_the_stages():
    s = paper(V2_S, mode="random_resize", seed=3)
    draws = [s.random_stage(step) for step in range(400)]
    assert draws == [paper(V2_S, mode="random_resize", seed=3).random_stage(step) for step in range(400)]
    assert draws != [paper(V2_S, mode="random_resize", seed=4).random_stage(step) for step in range(400)]
    counts = np.bincount(draws, minlength=4)
    assert counts.min() > 70  # about uniform over the 4 sizes (100 each expected)
    rows = s.describe(350)
    assert [row["image_size"] for row in rows] == [128, 184, 240, 300] and {tuple(r["epochs"]) for r in rows} == {
        (0, 349)
    }


def test_random_resize_needs_distinct_sizes():
    with pytest.raises(ConfigError, match="random_resize"):
        ProgressiveSchedule(num_stages=3, mode="random_resize", image_size=(64, 64))


def test_bad_settings_stop_with_a_message_naming_the_setting_and_the_value():
    with pytest.raises(ConfigError, match=r"^progressive\.num_stages must be >= 1, got 0$"):
        ProgressiveSchedule(num_stages=0)
    with pytest.raises(ConfigError, match=r"^progressive\.dropout must be \[first, last\], got \[0\.1\]$"):
        ProgressiveSchedule(dropout=(0.1,))
    with pytest.raises(ConfigError, match=r"^progressive\.mode random_resize needs progressive\.image_size \(the"):
        ProgressiveSchedule.resolve(None, mode="random_resize")
    with pytest.raises(ConfigError, match=r"2 or more distinct sizes .*; got \[16, 16, 18\]$"):
        ProgressiveSchedule(num_stages=3, mode="random_resize", image_size=(16, 18))  # earlier sizes rounded to 8


def test_random_resize_between_two_sizes_is_allowed_and_the_pairs_are_held_as_tuples():
    schedule = ProgressiveSchedule.resolve(None, num_stages=2, mode="random_resize", image_size=[16, 32])
    assert schedule.image_size == (16, 32) and [s.image_size for s in schedule.stages()] == [16, 32]


def test_epochs_past_max_epochs_stay_in_the_last_stage():
    schedule = ProgressiveSchedule(num_stages=4, image_size=(16, 40))
    assert [schedule.stage_at(epoch, 8) for epoch in (7, 8, 12)] == [3, 3, 3]

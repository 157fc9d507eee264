"""`python -m lit_effnet.summary`: every variant's counts beside the papers', and one model's stage table."""

from lit_effnet import list_models
from lit_effnet.models import VARIANTS
from lit_effnet.summary import main


def rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines()[2:]}


def test_the_table_lists_every_variant_with_its_eval_size_and_ratios_to_the_paper(capsys):
    assert main([]) == 0
    table = rows(capsys.readouterr().out)
    assert list(table) == list_models()
    for name, row in table.items():
        spec = VARIANTS[name]
        assert int(row[1]) == spec.eval_size
        if spec.paper is not None:  # params and MACs within 6% of what the paper reports
            assert 0.94 <= float(row[4]) <= 1.06 and 0.94 <= float(row[7]) <= 1.06
    assert table["efficientnet_b0"][2] == "5,288,548"  # timm's tf_efficientnet_b0, facts 2
    assert table["efficientnetv2_s"][2] == "21,458,488"


def test_one_models_stage_table_follows_its_block_table(capsys):
    assert main(["--model", "efficientnetv2_s"]) == 0
    out = capsys.readouterr().out
    stages = [line.split() for line in out.splitlines()[3:]]
    assert [s[0] for s in stages] == ["stem", "1", "2", "3", "4", "5", "6", "head"]
    assert [s[1] for s in stages[1:7]] == ["Fused-MBConv"] * 3 + ["MBConv"] * 3  # then SE0.25
    assert stages[-1][-1] == "12x12"  # 384 / 32


def test_an_unknown_model_is_one_line_and_exit_2(capsys):
    assert main(["--model", "efficientnet_b9"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown model 'efficientnet_b9'")

"""`make mutants`' scope: every module of a number's path has tests that exist and a mutmut project of its own."""

import importlib.util
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as scripts/mutants.py

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutants_script", ROOT / "scripts" / "mutants.py")
mutants = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutants)


def test_every_scored_module_and_its_tests_exist_and_no_module_is_in_two_projects():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    table = project["tool"]["lit_effnet"]["mutant-tests"]
    recipe = project["tool"]["mutmut"]["only_mutate"]
    assert not set(table) & set(recipe)
    for module, tests in [*table.items(), *((m, project["tool"]["mutmut"]["pytest_add_cli_args_test_selection"])
                                            for m in recipe)]:  # fmt: skip
        assert (ROOT / module).is_file(), module
        for test in tests:
            if not test.startswith("--") and "::" not in test and test.startswith("tests/"):
                assert (ROOT / test).is_file(), (module, test)
            elif "::" in test:  # a test picked or left out by name: a renamed test would silently drop out
                path, name = test.split("::")
                assert f"def {name.split('[')[0]}(" in (ROOT / path).read_text(), (module, test)


def test_a_modules_project_mutates_that_module_alone_against_its_own_tests(tmp_path):
    module = "lit_effnet/callbacks/seeding.py"
    mutants.prepare(tmp_path, module)
    settings = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    mutmut = settings["tool"]["mutmut"]
    assert mutmut["only_mutate"] == [module]
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["lit_effnet"]["mutant-tests"]
    assert mutmut["pytest_add_cli_args_test_selection"] == table[module]
    assert settings["tool"]["pytest"]["ini_options"]["markers"]  # pytest's settings carried over
    assert all((tmp_path / name).resolve() == ROOT / name for name in ("lit_effnet", "tests", "configs", "train.py"))


def test_a_mutant_pattern_picks_the_projects_of_the_modules_it_names():
    groups = mutants.groups()
    picked = [name for name, (_, modules) in groups.items() if mutants.selects("lit_effnet.data.decode.*", modules)]
    assert picked == ["lit_effnet.data.decode"]
    one_function = "lit_effnet.training.module.*ǁloss__mutmut_*"
    assert [name for name, (_, modules) in groups.items() if mutants.selects(one_function, modules)] == ["recipe"]

"""Run mutmut's mutants of one module against that module's own test files, in one process.

`make mutants` runs every mutant against every selected test that calls its function; on 2 shared cores that is
hours per module for the modules every training test calls. This driver takes the mutants mutmut generated (run
`make mutants` or `mutmut run` once, so that mutants/ exists) and runs each against the test files named, with
pytest's -x, in one process (no fork or re-import per mutant). A mutant these tests kill is killed; one they miss
might still be killed by another test, so the score is a lower bound of mutmut's own. Verdicts go to
mutants/<module>.quick.json, which a rerun resumes.

    cd mutants && NO_ALBUMENTATIONS_UPDATE=1 ../.venv/bin/python ../scripts/mutants_by_module.py \\
        lit_effnet/callbacks/seeding.py tests/callbacks/test_seeding.py [more test files or node ids]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

TIMEOUT_S = 300  # a mutant that loops forever fails its test here (mutmut would call it a timeout)


class MutantTimeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise MutantTimeout(f"no result in {TIMEOUT_S} s")


def main(argv: list[str]) -> int:
    module, tests = Path(argv[0]), argv[1:]
    names = list(json.loads(Path(f"{module}.meta").read_text())["exit_code_by_key"])
    out = Path(f"{module}.quick.json")
    verdicts: dict[str, str] = json.loads(out.read_text()) if out.exists() else {}
    signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    os.environ["MUTANT_UNDER_TEST"] = ""  # first the tests without a mutant: they must pass, or no verdict means much
    clean = pytest.main(["-x", "-q", "--no-header", "-p", "no:randomly", "-W", "ignore", *tests])
    if clean != 0:
        print(f"the tests fail without a mutant (pytest exit {int(clean)}): no verdicts")
        return 1
    for k, name in enumerate(names, 1):
        if name in verdicts:
            continue
        os.environ["MUTANT_UNDER_TEST"] = name
        signal.alarm(TIMEOUT_S)
        try:
            code = pytest.main(["-x", "-q", "--no-header", "-p", "no:randomly", "-W", "ignore", *tests])
        except MutantTimeout:
            code = pytest.ExitCode.TESTS_FAILED
        finally:
            signal.alarm(0)
        verdicts[name] = {0: "survived", 1: "killed"}.get(int(code), f"pytest exit {int(code)}")
        out.write_text(json.dumps(verdicts, indent=1))
        print(f"[{k}/{len(names)}] {name}: {verdicts[name]} ({time.monotonic() - start:.0f} s)", flush=True)
    os.environ["MUTANT_UNDER_TEST"] = ""
    killed = sum(v == "killed" for v in verdicts.values())
    print(f"{module}: {killed} / {len(verdicts)} killed ({100 * killed / len(verdicts):.1f}%)")
    for name, verdict in verdicts.items():
        if verdict != "killed":
            print(f"  {verdict}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

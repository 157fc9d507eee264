"""`make mutants`: mutmut over the recipe modules and over each module of a number's path, one run per group.

mutmut 3.8 keeps one test selection per project and first runs every selected test once to learn which test calls
which function. Over the whole path (datamodule, CLI, studies, checkpoints...) that selection is most of the suite,
and its first pass alone outlasts a session on 2 cores. So each module listed in pyproject.toml's
`[tool.lit_effnet.mutant-tests]` gets a mutmut project of its own under `mutants-runs/<module>/` (links to the
package, tests and configs, and pyproject.toml with that module's `only_mutate` and tests), and the recipe modules
keep the repo's own `[tool.mutmut]` and `mutants/`. Each project keeps its verdicts, so a rerun resumes.

    python scripts/mutants.py                                  # every group, then the table
    python scripts/mutants.py 'lit_effnet.callbacks.seeding.*'  # the groups these mutant names fall in
    python scripts/mutants.py --survivors 'lit_effnet.export.*'  # run the survivors again, after new tests
    python scripts/mutants.py --table                          # only the table, from the verdicts on disk

Python 3.11+ (tomllib).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "mutants-runs"
LINKED = ["lit_effnet", "tests", "configs", "train.py"]
HANG_S = 60  # a mutant's worker this old that used under a quarter of it in CPU time is waiting on nothing


def dotted(module_path: str) -> str:
    return module_path.removesuffix(".py").replace("/", ".")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def groups() -> dict[str, tuple[Path, list[str]]]:
    """Group name -> (its mutmut project folder, the modules it mutates)."""
    project = _project()
    found = {"recipe": (ROOT, project["tool"]["mutmut"]["only_mutate"])}
    for module in project["tool"]["lit_effnet"]["mutant-tests"]:
        found[dotted(module)] = (RUNS / dotted(module), [module])
    return found


def selects(pattern: str, modules: list[str]) -> bool:
    return any(fnmatch.fnmatch(dotted(m) + ".x", pattern) or pattern.startswith(dotted(m) + ".") for m in modules)


def _toml_list(values: list[str]) -> str:
    return "[\n" + "".join(f"    {json.dumps(v)},\n" for v in values) + "]"


def prepare(folder: Path, module: str) -> None:
    """A mutmut project for one module: the repo's pyproject.toml with `[tool.mutmut]` narrowed to it."""
    text = (ROOT / "pyproject.toml").read_text()
    project = tomllib.loads(text)
    settings = project["tool"]["mutmut"]
    tests = project["tool"]["lit_effnet"]["mutant-tests"][module]
    head = text[: text.index("[tool.mutmut]")]
    section = (
        "[tool.mutmut]\n"
        f"source_paths = {_toml_list(settings['source_paths'])}\n"
        f"only_mutate = {_toml_list([module])}\n"
        f"also_copy = {_toml_list(settings['also_copy'])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        f"process_isolation = {json.dumps(settings['process_isolation'])}\n"
        f"timeout_constant = {settings['timeout_constant']}\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name)
    config = folder / "pyproject.toml"
    if not config.exists() or config.read_text() != head + section:
        config.write_text(head + section)


def verdicts(folder: Path, module: str) -> dict[str, str]:
    """mutmut's own verdict of each mutant of `module`, read from its .meta file."""
    from mutmut.stats import status_by_exit_code

    meta = folder / "mutants" / f"{module}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: ("not checked" if code is None else status_by_exit_code[code]) for name, code in codes.items()}


RERUN = ("survived", "no tests")  # after tests were added: what they may now catch
CAUGHT = ("killed", "timeout")  # a mutant that makes its tests hang is caught too (mutmut's own score counts both)


def table(found: dict[str, tuple[Path, list[str]]]) -> None:
    print(f"{'module':40s} {'caught':>6s} / {'run':>5s}  score  (timeouts; not checked)")
    for folder, modules in found.values():
        for module in modules:
            status = verdicts(folder, module)
            run = [s for s in status.values() if s != "not checked"]
            caught = sum(s in CAUGHT for s in run)
            score = f"{100 * caught / len(run):5.1f}%" if run else "   - "
            timeouts = sum(s == "timeout" for s in run)
            print(f"{module:40s} {caught:6d} / {len(run):5d} {score}  ({timeouts}; {len(status) - len(run)})")
            for name, s in status.items():
                if s not in (*CAUGHT, "not checked"):
                    print(f"    {s}: {name}")


def _end_hung_workers(run: subprocess.Popen, stop: threading.Event) -> None:
    """mutmut stops a mutant at a CPU-time limit, which a worker waiting forever (the shard writer's loop bounds
    mutated: litdata then waits for chunks that never come) never reaches. Such a worker gets SIGXCPU, which mutmut
    records as a timeout. Workers are the children of mutmut's fork server, the child of `mutmut run`."""
    import psutil  # installed with the dev tools (ipykernel's ipython requires it)

    while not stop.wait(15):
        try:
            servers = psutil.Process(run.pid).children()
        except psutil.NoSuchProcess:
            return
        for worker in (w for server in servers for w in server.children()):
            try:
                age, cpu = time.time() - worker.create_time(), sum(worker.cpu_times()[:2])
                if age > HANG_S and 4 * cpu < age:
                    print(f"\nworker {worker.pid}: {age:.0f} s, {cpu:.0f} s of CPU: a hang, ended", flush=True)
                    worker.send_signal(signal.SIGXCPU)
            except psutil.NoSuchProcess:
                pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", help="mutant names or globs, as mutmut takes them (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutmut's --max-children")
    parser.add_argument("--table", action="store_true", help="print the table of the verdicts on disk, run nothing")
    parser.add_argument(
        "--survivors", action="store_true", help="run again the mutants that survived (after tests were added)"
    )
    args = parser.parse_args(argv)
    found = groups()
    wanted = args.patterns
    chosen = {name: group for name, group in found.items() if not wanted or any(selects(p, group[1]) for p in wanted)}
    if not chosen:
        print(f"mutants: no module matches {' '.join(args.patterns)}", file=sys.stderr)
        return 2
    if not args.table:
        mutmut = str(Path(sys.executable).with_name("mutmut"))
        for name, (folder, modules) in chosen.items():
            if folder != ROOT:
                prepare(folder, modules[0])
            # mutmut re-runs every mutant it is given by name; a module's own project is run unnamed, so it resumes
            patterns = [p for p in args.patterns if selects(p, modules)]
            if folder != ROOT and patterns == [f"{dotted(modules[0])}.*"]:
                patterns = []  # the whole module: unnamed, so it resumes
            if folder == ROOT and not patterns:
                patterns = _project()["tool"]["lit_effnet"]["recipe-mutants"]
            if args.survivors:  # mutmut keeps a verdict unless the mutant is named: name them
                patterns = [m for module in modules for m, s in verdicts(folder, module).items() if s in RERUN]
                if not patterns:
                    continue
            start = time.monotonic()
            print(f"== {name}: mutmut run in {folder.relative_to(ROOT) if folder != ROOT else '.'}", flush=True)
            run = subprocess.Popen([mutmut, "run", "--max-children", str(args.jobs), *patterns], cwd=folder)
            stop = threading.Event()
            threading.Thread(target=_end_hung_workers, args=(run, stop), daemon=True).start()
            code = run.wait()
            stop.set()
            print(f"== {name}: mutmut exit {code} after {time.monotonic() - start:.0f} s", flush=True)
    table(chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

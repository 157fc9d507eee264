"""RankWatch: a dead rank ends the run in one line naming it, the last checkpoint and the resume command, exit 3.

The two-process runs are in tests/test_ddp.py; here one process plays rank 0 of a two-rank run on this machine
(torch.distributed answered by a stand-in), with a real child process as rank 1, so the watch, the message and the
exit are seen in this process.
"""

import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_effnet.callbacks import ranks
from lit_effnet.callbacks.checkpoint import LastCheckpoint, best_checkpoint
from lit_effnet.callbacks.ranks import EXIT_PEER_DIED, RankWatch, collective_failure, how_it_ended, process_alive

# The watcher thread ends through the stand-in for os._exit (SystemExit), which pytest reports for a thread.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

RESUME = "python train.py --config quickstart --devices 2 --ckpt_path last"


@pytest.fixture
def rank1():
    """A child process standing for rank 1, started by this 'rank 0' (as Lightning's launcher starts its ranks)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


@pytest.fixture
def exits(monkeypatch):
    """os._exit recorded instead of done; the event is set when a rank would have exited."""
    codes, done = [], threading.Event()

    def exit_(code):
        codes.append(code)
        done.set()
        raise SystemExit(code)  # ends the watcher thread, as the process would have ended

    monkeypatch.setattr(ranks.os, "_exit", exit_)
    return codes, done


def ended_process() -> subprocess.Popen:
    """A process of this one's that has ended and been reaped: its pid names no running process."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process


def _two_rank_trainer(
    monkeypatch, peer_pid, *, global_rank=0, children=(), last_saved=None, ckpt_path=None, peer_host=None
):
    """A trainer of rank `global_rank` of 2, the other rank being `peer_pid` on this machine (or `peer_host`)."""
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")

    def all_gather_object(out, mine):
        out[:] = [mine if r == global_rank else (peer_host or socket.gethostname(), peer_pid) for r in range(2)]

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    last = LastCheckpoint("/runs/x")
    last.last_saved = last_saved
    best = best_checkpoint("/runs/x")  # train.py keeps the best model too; only a LastCheckpoint knows its last write
    strategy = SimpleNamespace(launcher=SimpleNamespace(procs=list(children))) if children is not None else object()
    return SimpleNamespace(
        world_size=2, global_rank=global_rank, strategy=strategy, checkpoint_callbacks=[best, last],
        ckpt_path=ckpt_path,
    )  # fmt: skip


def test_a_killed_rank_is_reported_once_naming_it_the_last_checkpoint_and_the_resume_command(
    monkeypatch, capsys, rank1, exits
):
    codes, done = exits
    rank2 = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another rank it started
    trainer = _two_rank_trainer(monkeypatch, rank1.pid, children=[rank1, rank2], last_saved=("/runs/x/last.ckpt", 1, 4))
    watch = RankWatch(RESUME)
    watch.setup(trainer, None, "fit")
    watcher = next(t for t in threading.enumerate() if t.name == "rank-watch")
    assert watcher.daemon  # never what keeps a finished run's process alive
    assert not done.wait(0.8) and codes == []  # a live peer: nothing said, several polls long
    rank1.send_signal(signal.SIGKILL)
    assert done.wait(10) and codes == [EXIT_PEER_DIED]
    assert rank2.wait(5) == -signal.SIGKILL  # the ranks it started end with it
    assert capsys.readouterr().err == (
        f"error: rank 1 (pid {rank1.pid}) was killed by SIGKILL: the run stopped on every rank; last checkpoint "
        f"/runs/x/last.ckpt (epoch 1, step 4); resume: {RESUME}\n"
    )


def test_without_a_checkpoint_the_line_says_so_and_resumes_without_ckpt_path(monkeypatch, capsys, rank1, exits):
    codes, done = exits
    trainer = _two_rank_trainer(monkeypatch, rank1.pid, children=[rank1])
    watch = RankWatch(RESUME)
    watch.setup(trainer, None, "fit")
    rank1.terminate()
    assert done.wait(10) and codes == [EXIT_PEER_DIED]
    assert capsys.readouterr().err == (
        f"error: rank 1 (pid {rank1.pid}) was killed by SIGTERM: the run stopped on every rank; no checkpoint was "
        "written yet; resume: python train.py --config quickstart --devices 2\n"
    )


def test_a_resumed_run_names_the_checkpoint_it_resumed_from_and_a_notebook_run_says_how_to_resume(
    monkeypatch, capsys, exits
):
    codes, done = exits
    gone = ended_process()  # a rank that is not this process's child: how it ended is unknown here
    trainer = _two_rank_trainer(monkeypatch, gone.pid, ckpt_path="/runs/x/last.ckpt", children=None)  # no launcher
    watch = RankWatch()
    watch.on_exception(trainer, None, RuntimeError("boom"))  # before setup: no peers known, nothing to say
    watch.setup(trainer, None, "fit")
    assert done.wait(10) and codes == [EXIT_PEER_DIED]
    assert capsys.readouterr().err == (
        f"error: rank 1 (pid {gone.pid}) is gone: the run stopped on every rank; last checkpoint /runs/x/last.ckpt "
        "(the one this run resumed from); resume: trainer.fit(..., ckpt_path=<the last checkpoint>)\n"
    )


def test_only_the_lowest_surviving_rank_speaks_but_every_rank_exits(monkeypatch, capsys, exits):
    codes, done = exits
    gone = ended_process()
    trainer = _two_rank_trainer(monkeypatch, gone.pid, global_rank=1)  # rank 0 died: rank 1 is the lowest left
    RankWatch(RESUME).setup(trainer, None, "fit")
    assert done.wait(10) and codes == [EXIT_PEER_DIED]
    assert capsys.readouterr().err.startswith(f"error: rank 0 (pid {gone.pid}) is gone")


def test_a_failed_collective_waits_for_the_dead_rank_and_reports_it(monkeypatch, capsys, rank1, exits):
    codes, _ = exits
    trainer = _two_rank_trainer(monkeypatch, rank1.pid, children=[rank1])
    watch = RankWatch(RESUME)
    threading.Timer(1.0, rank1.kill).start()  # gloo notices the closed socket before the process is gone
    monkeypatch.setattr(ranks.threading.Thread, "start", lambda self: None)  # no watcher: on_exception alone
    watch.setup(trainer, None, "fit")
    with pytest.raises(SystemExit):
        watch.on_exception(trainer, None, RuntimeError("[gloo] Connection closed by peer"))
    assert codes == [EXIT_PEER_DIED] and f"rank 1 (pid {rank1.pid}) was killed by SIGKILL" in capsys.readouterr().err


def test_a_rank_that_fails_alone_ends_the_ranks_it_started_and_says_nothing(monkeypatch, capsys, rank1, exits):
    codes, _ = exits
    trainer = _two_rank_trainer(monkeypatch, rank1.pid, children=[rank1])
    watch = RankWatch(RESUME)
    monkeypatch.setattr(ranks.threading.Thread, "start", lambda self: None)
    watch.setup(trainer, None, "fit")
    start = time.monotonic()
    watch.on_exception(trainer, None, ValueError("a bug on rank 0"))  # not a collective: no grace period
    assert time.monotonic() - start < 0.5
    assert rank1.wait(5) == -signal.SIGKILL and codes == [] and capsys.readouterr().err == ""
    watch.on_exception(trainer, None, KeyboardInterrupt())  # every rank stops together: the peers are kept


def test_only_a_multi_process_fit_over_gloo_or_nccl_is_watched_and_only_ranks_on_this_machine(monkeypatch, exits):
    started, start = [], ranks.threading.Thread.start
    monkeypatch.setattr(ranks.threading.Thread, "start", lambda self: started.append(self.name))
    backend, initialized = ["gloo"], [True]
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: initialized[0])
    monkeypatch.setattr(torch.distributed, "get_backend", lambda: backend[0])
    gather = lambda out, mine: out.__setitem__(slice(None), [mine] * 2)  # noqa: E731
    monkeypatch.setattr(torch.distributed, "all_gather_object", gather)
    two, one = SimpleNamespace(world_size=2, global_rank=0), SimpleNamespace(world_size=1, global_rank=0)
    RankWatch().setup(two, None, "validate")  # not fit
    RankWatch().setup(one, None, "fit")  # one process
    backend[0] = "xla"
    RankWatch().setup(two, None, "fit")  # XLA's process group
    backend[0], initialized[0] = "gloo", False
    RankWatch().setup(two, None, "fit")  # no process group
    assert started == []
    initialized[0] = True
    for backend[0] in ("gloo", "nccl", "cpu:gloo,cuda:nccl"):
        RankWatch().setup(two, None, "fit")
    assert started == ["rank-watch"] * 3
    monkeypatch.setattr(ranks.threading.Thread, "start", start)
    codes, done = exits
    gone = ended_process()
    remote = _two_rank_trainer(monkeypatch, gone.pid, peer_host="another-machine")  # its pid means nothing here
    RankWatch().setup(remote, None, "fit")
    assert not done.wait(0.8) and codes == []


def test_a_pickled_watch_keeps_its_resume_command_and_gets_its_own_lock():
    watch = pickle.loads(pickle.dumps(RankWatch(RESUME)))
    assert watch.resume_command == RESUME and watch._reporting.acquire(blocking=False)


def test_how_a_process_ended_and_whether_it_still_runs():
    assert (how_it_ended(-9), how_it_ended(-15), how_it_ended(None), how_it_ended(2), how_it_ended(0)) == (
        "was killed by SIGKILL", "was killed by SIGTERM", "is gone", "exited with code 2", "exited with code 0",
    )  # fmt: skip
    assert process_alive(ranks.os.getpid())
    with tempfile.TemporaryDirectory() as folder:  # /proc/<pid>/stat puts the name in parentheses: any name
        odd = Path(folder, "x) Z (")
        odd.symlink_to(shutil.which("sleep"))
        sleeper = subprocess.Popen([str(odd), "30"])
        try:
            assert process_alive(sleeper.pid)
        finally:
            sleeper.kill()
            sleeper.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{zombie.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # dead, not yet reaped: a zombie
    assert not process_alive(zombie.pid)
    zombie.wait()
    assert not process_alive(zombie.pid)


def test_which_errors_are_a_failed_collective():
    assert collective_failure(torch.distributed.DistError("timeout"))
    assert collective_failure(RuntimeError("[gloo] Connection closed by peer [10.0.0.2]:1234"))
    assert collective_failure(RuntimeError("Connection reset by peer"))
    assert not collective_failure(RuntimeError("CUDA out of memory"))
    assert not collective_failure(ValueError("Connection closed"))


def test_lightnings_process_observer_is_replaced_by_one_that_watches_nothing(monkeypatch):
    from lightning.pytorch.strategies.launchers import subprocess_script

    monkeypatch.setattr(subprocess_script, "_launch_process_observer", subprocess_script._launch_process_observer)
    threads = threading.active_count()
    ranks.disable_lightning_process_observer()
    assert subprocess_script._launch_process_observer([object()]) is None and threading.active_count() == threads


def test_without_proc_a_process_is_alive_while_its_pid_answers_signal_0(monkeypatch):
    gone = ended_process()

    def no_proc(path, *args, **kwargs):
        raise PermissionError(path)  # as where /proc/<pid>/stat cannot be read (e.g. macOS: no /proc)

    monkeypatch.setattr("builtins.open", no_proc)
    alive = (process_alive(ranks.os.getpid()), process_alive(gone.pid))
    monkeypatch.undo()
    assert alive == (True, False)

"""A dead rank ends a multi-process run in one line, within a second, instead of leaving the others in a collective.

When one process of a DDP run dies (kill -9, the OOM killer), the others block in their next collective: gloo
fails seconds later with a traceback that names no rank, and NCCL waits for the process group's timeout (torch's
default: 30 minutes). Each rank here watches the other processes on its machine and, when one is gone, the
lowest surviving rank prints one line naming it, the last checkpoint written and the command that resumes the
run; every survivor then exits at once with EXIT_PEER_DIED, before it could write anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

EXIT_PEER_DIED = 3
POLL_SECONDS = 0.25
COLLECTIVE_GRACE_SECONDS = 5.0  # a peer whose socket closed may take a moment to be gone from /proc


def process_alive(pid: int) -> bool:
    """Whether a local process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): signal 0 only asks whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def collective_failure(exception: BaseException) -> bool:
    """Whether an exception is a collective that failed: torch's distributed errors, gloo's closed sockets."""
    if isinstance(exception, torch.distributed.DistError):
        return True
    text = str(exception)
    return isinstance(exception, RuntimeError) and any(s in text for s in ("Connection closed", "Connection reset"))


def how_it_ended(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return "is gone" if returncode is None else f"exited with code {returncode}"


def disable_lightning_process_observer() -> None:
    """Lightning's launcher watches the ranks it starts and, when one dies, SIGKILLs every process with nothing
    said: RankWatch reports first and reaps those children itself."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._launch_process_observer = lambda child_processes: None


class RankWatch(Callback):
    """Watches the other ranks on this machine from a thread; see the module's docstring.

    Args:
        resume_command: the command line that resumes the run (the CLI's); None: say `ckpt_path=<path>`.
    """

    def __init__(self, resume_command: str | None = None) -> None:
        self.resume_command = resume_command
        self._peers: dict[int, int] = {}  # rank -> pid, on this machine
        self._stop = threading.Event()
        self._trainer: Trainer | None = None
        self._reporting = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Spawning launchers (XLA's for several devices, ddp_spawn) pickle the trainer with its callbacks: the
        # settings travel, the watch's thread, lock and event are made again in the process that receives them.
        return {"resume_command": self.resume_command}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        dist = torch.distributed
        if stage != "fit" or trainer.world_size < 2 or not dist.is_initialized():
            return
        if not any(backend in str(dist.get_backend()) for backend in ("gloo", "nccl")):
            return  # XLA's process group: not watched (docs/running-long-jobs.md)
        ranks: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(ranks, (socket.gethostname(), os.getpid()))  # once, at setup
        host = socket.gethostname()
        self._peers = {r: pid for r, (h, pid) in enumerate(ranks) if h == host and r != trainer.global_rank}
        self._trainer = trainer
        self._stop.clear()
        # A daemon: a run that ends with the watch still polling is not kept alive by it.
        threading.Thread(target=self._watch, name="rank-watch", daemon=True).start()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop.set()  # from here on, ranks finish and exit at their own pace

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop.set()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return  # every rank stops together and saves last.ckpt: the peers are still needed
        self._stop.set()
        # A collective that failed (gloo notices a closed socket at once, before the next poll): was it a death?
        deadline = time.monotonic() + (COLLECTIVE_GRACE_SECONDS if collective_failure(exception) else 0.0)
        while self._peers:
            dead = self._dead_peers()
            if dead:
                self._report(dead)
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        # This rank fails on its own, and its error is the run's one line: end the ranks it started, which would
        # otherwise report it as dead.
        for process in self._children():
            process.kill()

    def _children(self) -> list[Any]:
        launcher = getattr(self._trainer.strategy, "launcher", None) if self._trainer is not None else None
        return list(getattr(launcher, "procs", []) or [])

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            dead = self._dead_peers()
            if dead and not self._stop.is_set():
                self._report(dead)

    def _dead_peers(self) -> dict[int, int]:
        for child in self._children():
            child.poll()  # reaps it: a dead child is then gone from /proc too
        return {rank: pid for rank, pid in self._peers.items() if not process_alive(pid)}

    def _report(self, dead: dict[int, int]) -> None:
        """Print the run's one line (on the lowest surviving rank), end the ranks this one started, exit."""
        self._reporting.acquire()  # the watcher and the main thread may both get here: once
        trainer = self._trainer
        assert trainer is not None
        children = {child.pid: child for child in self._children()}
        survivors = [r for r in (trainer.global_rank, *self._peers) if r not in dead]
        if trainer.global_rank == min(survivors):
            rank, pid = min(dead.items())
            child = children.get(pid)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=2)  # a zombie a moment ago: its exit status is there to collect
            ended = how_it_ended(child.returncode if child is not None else None)
            print(f"error: {self._message(trainer, rank, pid, ended)}", file=sys.stderr, flush=True)
        for child in children.values():
            if child.returncode is None:
                child.kill()
        os._exit(EXIT_PEER_DIED)

    def _message(self, trainer: Trainer, rank: int, pid: int, ended: str) -> str:
        from lit_effnet.callbacks.checkpoint import LastCheckpoint

        saved = next(
            (c.last_saved for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint) and c.last_saved),
            None,
        )
        if saved is not None:
            path, epoch, step = saved
            checkpoint = f"last checkpoint {path} (epoch {epoch}, step {step})"
        elif trainer.ckpt_path:
            checkpoint = f"last checkpoint {trainer.ckpt_path} (the one this run resumed from)"
        else:
            checkpoint = "no checkpoint was written yet"
        resume = self.resume_command or "trainer.fit(..., ckpt_path=<the last checkpoint>)"
        if saved is None and not trainer.ckpt_path:
            resume = resume.replace(" --ckpt_path last", "")
        return f"rank {rank} (pid {pid}) {ended}: the run stopped on every rank; {checkpoint}; resume: {resume}"

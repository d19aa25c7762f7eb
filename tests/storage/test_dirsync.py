"""Directory fsyncs shared by concurrent stores: who waits for which fsync."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from aiodicom.storage.dirsync import DirectorySyncer, fsync_directory

WAIT = 10.0  # seconds; every wait below ends long before unless the code is wrong


class GatedFsync:
    """A fake fsync that records its calls and blocks each one until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.lock = threading.Lock()
        self.call_started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail_next: OSError | None = None

    def __call__(self, directory: str) -> None:
        with self.lock:
            self.started.append(directory)
        self.call_started.release()
        assert self.release.acquire(timeout=WAIT)
        with self.lock:
            error, self.fail_next = self.fail_next, None
        if error is not None:
            raise error


def _start(syncer: DirectorySyncer, directory: str) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            syncer.sync(directory)
            outcome.append("ok")
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _queued_behind(syncer: DirectorySyncer, directory: str) -> bool:
    with syncer._lock:
        folder = syncer._folders.get(directory)
        return folder is not None and folder.queued is not None


def _wait_until(condition: object) -> None:
    """Bounded wait for another thread to reach a state (checked under the lock)."""
    event = threading.Event()
    for _ in range(int(WAIT / 0.001)):
        if condition():  # type: ignore[operator]
            return
        event.wait(0.001)
    raise AssertionError("the other thread never got there")


def test_one_caller_alone_gets_one_fsync() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    fsync.release.release()
    syncer.sync("/d")
    assert fsync.started == ["/d"]
    assert syncer.folders_in_use == 0


def test_callers_arriving_during_an_fsync_share_the_next_one() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    first, first_outcome = _start(syncer, "/d")
    assert fsync.call_started.acquire(timeout=WAIT)  # fsync 1 is running
    # Three more renames land while it runs: it may have started before them, so
    # none of them may return on it; one later fsync covers all three.
    later = [_start(syncer, "/d") for _ in range(3)]
    _wait_until(lambda: _queued_behind(syncer, "/d"))
    fsync.release.release()  # fsync 1 ends
    first.join(WAIT)
    assert first_outcome == ["ok"]
    assert fsync.call_started.acquire(timeout=WAIT)  # fsync 2 starts
    assert all(not outcome for _, outcome in later)  # nobody returned before it ended
    fsync.release.release()
    for thread, outcome in later:
        thread.join(WAIT)
        assert outcome == ["ok"]
    assert fsync.started == ["/d", "/d"]
    assert syncer.folders_in_use == 0


def test_different_folders_do_not_wait_for_each_other() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    a, a_outcome = _start(syncer, "/a")
    b, b_outcome = _start(syncer, "/b")
    assert fsync.call_started.acquire(timeout=WAIT)
    assert fsync.call_started.acquire(timeout=WAIT)  # both running at once
    fsync.release.release()
    fsync.release.release()
    a.join(WAIT)
    b.join(WAIT)
    assert a_outcome == b_outcome == ["ok"]
    assert sorted(fsync.started) == ["/a", "/b"]


def test_a_failed_fsync_fails_every_caller_it_covers_and_the_next_round_is_fresh() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    first, first_outcome = _start(syncer, "/d")
    assert fsync.call_started.acquire(timeout=WAIT)
    joiners = [_start(syncer, "/d") for _ in range(2)]
    _wait_until(lambda: _queued_behind(syncer, "/d"))
    fsync.release.release()  # fsync 1 succeeds
    first.join(WAIT)
    assert fsync.call_started.acquire(timeout=WAIT)
    fsync.fail_next = OSError(5, "Input/output error")
    fsync.release.release()  # fsync 2 fails
    for thread, outcome in joiners:
        thread.join(WAIT)
        [error] = outcome
        assert isinstance(error, OSError) and error.errno == 5
    assert first_outcome == ["ok"]
    fsync.release.release()
    syncer.sync("/d")  # a new round, a new fsync
    assert len(fsync.started) == 3


def test_the_real_fsync_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    DirectorySyncer().sync(str(tmp_path))
    fsync_directory(tmp_path)
    with pytest.raises(FileNotFoundError):
        DirectorySyncer().sync(str(tmp_path / "missing"))
    assert os.path.isdir(tmp_path)

"""Directory fsyncs shared between concurrent stores (group commit).

With ``fsync`` on, a stored file is durable only once the folder that holds its new
name has been fsynced after the rename. When several associations store into the same
folder at once, one directory fsync that *starts* after all their renames covers them
all, so they need not each pay for one.

:class:`DirectorySyncer` does that for the worker threads that commit files. For each
folder there is at most one fsync running and at most one queued behind it:

* a caller that finds a queued fsync joins it: it has not started yet, so it starts
  after the caller's rename;
* otherwise the caller queues a new one and leads it: it waits for the running fsync
  to end (that one may have started before the caller's rename), then runs its own,
  which covers everyone who joined in the meantime.

Every caller returns only after an fsync that started after its call has finished,
and gets that fsync's error if it failed. Callers block: they are worker threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["DirectorySyncer", "fsync_directory"]


def fsync_directory(directory: str | Path) -> None:
    """fsync one folder (a no-op on Windows, where folders cannot be opened for it)."""
    if os.name == "nt":
        return
    descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Round:
    """One directory fsync and the callers it covers."""

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.error: OSError | None = None


class _Folder:
    def __init__(self) -> None:
        self.running: _Round | None = None
        self.queued: _Round | None = None


class DirectorySyncer:
    """Group commit of directory fsyncs across threads (see the module docstring)."""

    def __init__(self, fsync: Callable[[str], None] = fsync_directory) -> None:
        self._fsync = fsync
        self._lock = threading.Lock()
        self._folders: dict[str, _Folder] = {}

    def sync(self, directory: str) -> None:
        """Return once an fsync of ``directory`` that started after this call has ended.

        Raises the ``OSError`` of that fsync if it failed.
        """
        with self._lock:
            folder = self._folders.get(directory)
            if folder is None:
                folder = self._folders[directory] = _Folder()
            joined = folder.queued
            if joined is None:
                round_ = folder.queued = _Round()
                running = folder.running
        if joined is not None:
            joined.finished.wait()
            if joined.error is not None:
                raise joined.error
            return
        if running is not None:
            running.finished.wait()
        with self._lock:
            folder.queued = None  # later callers queue the next round
            folder.running = round_
        try:
            self._fsync(directory)
        except OSError as error:
            round_.error = error
        except BaseException:
            round_.error = OSError(f"the fsync of {directory} was interrupted")
            raise
        finally:
            with self._lock:
                folder.running = None
                if folder.queued is None:
                    del self._folders[directory]
            round_.finished.set()
        if round_.error is not None:
            raise round_.error

    @property
    def folders_in_use(self) -> int:
        """Folders with an fsync running or queued (for tests and diagnostics)."""
        with self._lock:
            return len(self._folders)

"""Helpers of the robustness suite: the SCP as a child process, source files, disk checks.

The fuzz, fault and load tests run the server either in-process (``running_scp`` from
``tests/scp/scp_helpers.py``) or as the ``aiodicom storescp`` command in a child process,
whose memory (RSS) and open descriptors are read from ``/proc/PID``, and which can be
killed with SIGKILL like a real crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _folder in (_HERE, _HERE.parent, _HERE.parent / "scp"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from aiodicom.storage.part10 import encode_file_meta  # noqa: E402
from fuzz_sessions import CT_IMAGE_STORAGE, EXPLICIT_VR_LE, UID_ROOT, dataset  # noqa: E402
from scp_helpers import (  # noqa: E402
    LOOPBACK,
    leftover_temporary_files,
    running_scp,
    stored_dataset_bytes,
    stored_files,
)
from support import split_part10  # noqa: E402

__all__ = [
    "LOOPBACK",
    "ScpProcess",
    "leftover_temporary_files",
    "make_source_files",
    "parses_fully",
    "running_scp",
    "split_part10",
    "stored_dataset_bytes",
    "stored_files",
]

_PORT_LINE = re.compile(r"listening on port (\d+)")


@dataclass
class SourceFile:
    path: Path
    sop_instance_uid: str
    dataset: bytes


def make_source_files(
    folder: Path, count: int, *, tag: str = "1", payload_size: int = 2048
) -> list[SourceFile]:
    """``count`` small Part 10 CT files with distinct UIDs and distinct pixel bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(count):
        uid = f"{UID_ROOT}.9.{tag}.{number + 1}"
        # Distinct content per file: a swapped or shifted file would show.
        seed = number.to_bytes(4, "little")
        payload = (seed + bytes(range(252))) * (payload_size // 256 + 1)
        data = dataset(uid, payload=payload[:payload_size])
        meta = encode_file_meta(
            sop_class_uid=CT_IMAGE_STORAGE,
            sop_instance_uid=uid,
            transfer_syntax_uid=EXPLICIT_VR_LE,
        )
        path = folder / f"{number:06d}.dcm"
        path.write_bytes(meta + data)
        files.append(SourceFile(path, uid, data))
    return files


def parses_fully(path: Path) -> bool:
    """pydicom reads the whole file, every element included (no deferred reads)."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            # pydicom warns (and stops) at a missing delimiter: that is not a full parse.
            warnings.simplefilter("error")
            parsed = pydicom.dcmread(path)
            for element in parsed.iterall():
                _ = element.value
    except Exception:
        return False
    return True


class ScpProcess:
    """``python -m aiodicom storescp`` in a child process on a free loopback port."""

    def __init__(self, data_dir: Path, log_path: Path, extra_args: Iterable[str] = ()) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.idle_sockets = 0

    def start(self, timeout: float = 30.0) -> int:
        """Start the server and return its port (read from its first stdout line)."""
        command = [
            sys.executable,
            "-m",
            "aiodicom",
            "storescp",
            "--bind",
            LOOPBACK,
            "-od",
            str(self.data_dir),
            "-q",
            *self.extra_args,
            "0",
        ]
        log = open(self.log_path, "a")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        found = _PORT_LINE.search(line)
        if found is None:
            self.kill()
            raise RuntimeError(f"storescp did not start: {line!r}\n{self.log_text()[-2000:]}")
        self.port = int(found.group(1))
        # Listening, no connection yet: the sockets it holds when idle.
        self.idle_sockets = self.socket_count()
        return self.port

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) * 1024 if found else 0

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def socket_count(self) -> int:
        """Open sockets: the listener and the loop's own, plus one per connection."""
        folder = f"/proc/{self.pid}/fd"
        count = 0
        for name in os.listdir(folder):
            with contextlib.suppress(FileNotFoundError):  # closed while we looked
                count += os.readlink(f"{folder}/{name}").startswith("socket:")
        return count

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would, and reap the child."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def stop(self, timeout: float = 30.0) -> str:
        """SIGINT (graceful shutdown); returns the rest of stdout (the summary line)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return out or ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def internal_errors(self) -> list[tuple[int | None, str]]:
        """(peer port, exception) of each "unexpected error" the server logged."""
        return internal_errors(self.log_text())


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")
_PEER_PORT = re.compile(r":(\d+): unexpected error")


def internal_errors(log: str) -> list[tuple[int | None, str]]:
    """For each traceback in a server log: the peer's port (when the line names it) and
    the exception line. Every one is an exception the server did not expect."""
    found: list[tuple[int | None, str]] = []
    lines = log.splitlines()
    for number, line in enumerate(lines):
        if "unexpected error" not in line and not line.startswith("Traceback"):
            continue
        if line.startswith("Traceback") and number and "unexpected error" in lines[number - 1]:
            continue  # the traceback of the line before: counted once
        exception = next(
            (later for later in lines[number + 1 : number + 200] if _EXCEPTION_LINE.match(later)),
            line,
        )
        port = _PEER_PORT.search(line)
        found.append((int(port.group(1)) if port else None, exception))
    return found

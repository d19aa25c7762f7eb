"""Send a workload: one sender process per association, timed from start to exit.

DCMTK ``storescu`` is the reference sender. It is run with ``TCP_NODELAY=1`` in its
environment (Nagle's algorithm off) except for the workloads marked ``nagle``, which
keep DCMTK's defaults as most sites run them (the receivers get the same environment,
see :func:`receivers.launch.dcmtk_environment`). The aiodicom ``storescu`` command is used
instead with ``--sender aiodicom`` once it exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .datasets import Workload
from .launch import LOOPBACK, dcmtk_environment

SENDERS = ("dcmtk", "aiodicom")
CALLING_AE_TITLE = "BENCHSCU"
CALLED_AE_TITLE = "ANY-SCP"


def missing_reason(sender: str) -> str | None:
    """Why ``sender`` cannot run here, or None when it can."""
    if sender == "dcmtk":
        if shutil.which("storescu") is None:
            return "DCMTK storescu is not installed: apt-get install -y dcmtk"
        return None
    if sender == "aiodicom":
        try:
            probe = subprocess.run(
                [sys.executable, "-m", "aiodicom", "storescu", "--help"],
                capture_output=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            return "python -m aiodicom storescu --help did not answer"
        if probe.returncode != 0:
            return "this aiodicom has no storescu command yet (python -m aiodicom storescu)"
        return None
    return f"unknown sender {sender!r}"


def split_evenly(paths: Sequence[Path], parts: int) -> list[list[Path]]:
    """``parts`` contiguous slices whose sizes differ by at most one."""
    size, extra = divmod(len(paths), parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        slices.append(list(paths[start:end]))
        start = end
    return [part for part in slices if part]


def _command(sender: str, port: int, paths: Sequence[Path]) -> list[str]:
    files = [str(path) for path in paths]
    if sender == "aiodicom":
        return [
            sys.executable,
            "-m",
            "aiodicom",
            "storescu",
            "-aet",
            CALLING_AE_TITLE,
            "-aec",
            CALLED_AE_TITLE,
            "-q",
            LOOPBACK,
            str(port),
            *files,
        ]
    return [
        str(shutil.which("storescu")),
        "-aet",
        CALLING_AE_TITLE,
        "-aec",
        CALLED_AE_TITLE,
        # Connection, ACSE and DIMSE timeouts, so a stuck receiver cannot hang a run.
        "-to",
        "30",
        "-ta",
        "60",
        "-td",
        "120",
        LOOPBACK,
        str(port),
        *files,
    ]


@dataclass(frozen=True)
class SendResult:
    seconds: float
    # One line per sender process that failed (exit status and the end of its stderr).
    failures: tuple[str, ...]


def send(
    workload: Workload, port: int, *, sender: str, log_dir: Path, timeout: float
) -> SendResult:
    """Send every file of ``workload`` to ``port``; wall time from first start to last exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    environment = dcmtk_environment(nagle=workload.nagle)
    batches = split_evenly([item.path for item in workload.files], workload.associations)
    logs = [(log_dir / f"sender-{index:02d}.log").open("w") for index in range(len(batches))]
    processes: list[subprocess.Popen[bytes]] = []
    failures = []
    try:
        start = time.perf_counter()
        for batch, log in zip(batches, logs, strict=True):
            processes.append(
                subprocess.Popen(
                    _command(sender, port, batch),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=environment,
                )
            )
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                failures.append(f"sender pid {process.pid} still running after {timeout:.0f} s")
        seconds = time.perf_counter() - start
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for log in logs:
            log.close()
    for index, process in enumerate(processes):
        if process.returncode != 0:
            tail = (log_dir / f"sender-{index:02d}.log").read_text(errors="replace")
            tail = " | ".join(tail.strip().splitlines()[-3:])
            failures.append(f"sender {index} exited with {process.returncode}: {tail}")
    return SendResult(seconds=seconds, failures=tuple(failures))

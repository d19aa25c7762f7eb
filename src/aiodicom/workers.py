"""``aiodicom storescp --workers N``: several receiver processes sharing one port.

One Python process uses one core. On a multi-core machine N processes each bind the same
port with SO_REUSEPORT (Linux, the BSDs) and the kernel spreads new connections over
them, so concurrent associations are served in parallel. Each worker is the ordinary
``aiodicom storescp`` with hidden options: ``--reuse-port``, ``--bound-port`` and ``--no-cleanup``
(temporary files are cleaned once, here, before any worker starts, so that a worker
never removes another's file in progress; temporary names carry the process id).

The parent only starts, watches and stops the workers: it forwards SIGINT/SIGTERM, and
prints one summary adding up theirs. Limits such as ``--max-associations`` apply per
worker.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .storage import StorageConfig, StorageWriter

_LISTENING = re.compile(r"listening on port (\d+)")
_SUMMARY = re.compile(
    r"(\d+) stored, (\d+) failed, (\d+) echoes, (\d+) associations "
    r"\((\d+) rejected, (\d+) aborted\)"
)


def summary_line(
    stored: int, failed: int, echoes: int, associations: int, rejected: int, aborted: int
) -> str:
    """The storescp exit summary; :data:`_SUMMARY` reads it back from the workers."""
    return (
        f"aiodicom storescp: {stored} stored, {failed} failed, {echoes} echoes, "
        f"{associations} associations ({rejected} rejected, {aborted} aborted)"
    )


def reserve_port(host: str | None, port: int) -> tuple[socket.socket, int]:
    """A bound (not listening) SO_REUSEPORT socket: holds the port while workers start."""
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host or "", port))
    return holder, int(holder.getsockname()[1])


def run_workers(
    worker_arguments: Sequence[str],
    *,
    workers: int,
    host: str | None,
    port: int,
    data_dir: Path,
    ae_title: str,
) -> int:
    """Start ``workers`` storescp processes on one port and wait for them; the exit code."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("aiodicom storescp: --workers needs SO_REUSEPORT", file=sys.stderr)
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    StorageWriter(StorageConfig(data_dir=data_dir)).cleanup_sync()
    holder, bound_port = reserve_port(host, port)
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(workers):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "aiodicom",
                        "storescp",
                        *worker_arguments,
                        "--reuse-port",
                        "--no-cleanup",
                        "--bound-port",
                        str(bound_port),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not _LISTENING.search(line):
                raise RuntimeError(f"a worker did not start: {line.strip() or 'no output'}")
    except (OSError, RuntimeError) as error:
        print(f"aiodicom storescp: {error}", file=sys.stderr)
        _stop(children)
        return 2
    finally:
        holder.close()
    print(
        f"aiodicom storescp: {ae_title} listening on port {bound_port} ({workers} workers)",
        flush=True,
    )
    return _supervise(children)


def _supervise(children: list[subprocess.Popen[str]]) -> int:
    def forward(received: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(received)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
    totals = [0] * 6
    codes = []
    for child in children:
        assert child.stdout is not None
        for line in child.stdout:
            found = _SUMMARY.search(line)
            if found:
                totals = [
                    total + int(value) for total, value in zip(totals, found.groups(), strict=True)
                ]
        codes.append(child.wait())
    print(summary_line(*totals), flush=True)
    return max(codes, default=0)


def _stop(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

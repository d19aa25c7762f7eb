"""``aiodicom storescp --workers N``: processes sharing one port, one summary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aiodicom.cli import _worker_arguments
from support import need_executable, pydicom_test_files


def test_worker_arguments_drop_the_subcommand_and_worker_count() -> None:
    argv = ["storescp", "--workers", "3", "-aet", "X", "-od", "/d", "--bind", "127.0.0.1", "104"]
    assert _worker_arguments(argv) == ["-aet", "X", "-od", "/d", "--bind", "127.0.0.1", "104"]
    argv = ["storescp", "0", "--workers=2", "-q"]
    assert _worker_arguments(argv) == ["0", "-q"]
    # An option value equal to the port is left alone (the port stays too; the
    # workers' --bound-port wins over it).
    argv = ["storescp", "0", "-ta", "0", "--workers", "2"]
    assert _worker_arguments(argv) == ["0", "-ta", "0"]


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT load balancing is Linux's")
def test_two_workers_share_a_port(tmp_path: Path) -> None:
    storescu = need_executable("storescu")
    echoscu = need_executable("echoscu")
    sources = [p for p in pydicom_test_files() if p.name in ("CT_small.dcm", "MR_small.dcm")]
    server = subprocess.Popen(
        [
            sys.executable, "-m", "aiodicom", "storescp", "--workers", "2",
            "--bind", "127.0.0.1", "-q", "-od", str(tmp_path), "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        first_line = server.stdout.readline()
        found = re.search(r"listening on port (\d+) \(2 workers\)", first_line)
        assert found, first_line
        port = found.group(1)
        # Several connections at once, so both workers are likely to get some.
        clients = [
            subprocess.Popen([echoscu, "-to", "10", "127.0.0.1", port]) for _ in range(6)
        ] + [
            subprocess.Popen(
                [storescu, "-to", "10", "127.0.0.1", port, *map(str, sources)],
                stderr=subprocess.DEVNULL,
            )
        ]
        assert [client.wait(timeout=60) for client in clients] == [0] * 7
        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, stderr
    # The parent adds up the workers' summaries.
    assert "2 stored, 0 failed, 6 echoes, 7 associations" in stdout, stdout
    assert len(list(tmp_path.rglob("*.dcm"))) == 2
    assert not list((tmp_path / ".aiodicom-tmp").iterdir())

"""``aiodicom storescp`` as a user runs it: start, receive from DCMTK, Ctrl-C, summary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from aiodicom import __version__
from support import need_executable, pydicom_test_files


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiodicom", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == f"aiodicom {__version__}"


def test_help_names_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiodicom", "storescp", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("-aet", "--output-directory", "--sort-by", "-pdu", "--fsync", "-td"):
        assert option in result.stdout


# The event loops and the two log levels, two runs: -v on one of them only.
@pytest.mark.parametrize(("event_loop", "verbose"), [("asyncio", False), ("uvloop", True)])
def test_storescp_receives_and_stops_on_ctrl_c(
    tmp_path: Path, event_loop: str, verbose: bool
) -> None:
    if event_loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed (pip install uvloop)")
    echoscu = need_executable("echoscu")
    storescu = need_executable("storescu")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiodicom",
            "storescp",
            "--bind",
            "127.0.0.1",
            "-aet",
            "CLI_SCP",
            "-od",
            str(tmp_path),
            "--sort-by",
            "series",
            "--event-loop",
            event_loop,
            *(["-v"] if verbose else []),
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        found = re.search(r"CLI_SCP listening on port (\d+)", first_line)
        assert found, first_line
        port = found.group(1)
        echo = subprocess.run(
            [echoscu, "-to", "10", "127.0.0.1", port], capture_output=True, timeout=30
        )
        assert echo.returncode == 0, echo.stderr
        source = next(p for p in pydicom_test_files() if p.name == "MR_small.dcm")
        store = subprocess.run(
            [storescu, "-to", "10", "127.0.0.1", port, str(source)],
            capture_output=True,
            timeout=30,
        )
        assert store.returncode == 0, store.stderr
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "1 stored, 0 failed, 1 echoes" in stdout
    dataset = pydicom.dcmread(source)
    assert "association accepted" in stderr  # associations are logged either way
    # A line per stored file with -v only (it costs CPU at thousands of files/s).
    assert (f"stored {tmp_path}" in stderr) == verbose, stderr
    assert f"event loop: {event_loop}" in stderr
    assert (tmp_path / dataset.SeriesInstanceUID / f"{dataset.SOPInstanceUID}.dcm").is_file()


def test_tls_options_need_a_certificate(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiodicom", "storescp", "--tls-ca", "ca.pem", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "need --tls-cert" in result.stderr

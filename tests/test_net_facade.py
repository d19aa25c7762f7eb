"""The synchronous, pacsanini-compatible StoreSCPServer, used the way its docs show."""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pydicom
import pytest

from aiodicom.convert import dcm2dict
from aiodicom.models import DicomNode, StorageSortKey
from aiodicom.net import StoreSCPServer
from support import need_executable, pydicom_test_files

CT_SMALL = next(p for p in pydicom_test_files() if p.name == "CT_small.dcm")


def _storescu(port: int, *files: Path) -> None:
    storescu = need_executable("storescu")
    result = subprocess.run(
        [storescu, "-to", "10", "-aec", "MY_AE", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


def _expected_path(data_dir: Path, source: Path) -> Path:
    dataset = pydicom.dcmread(source)
    return (
        data_dir
        / str(dataset.PatientID)
        / dataset.StudyInstanceUID
        / dataset.SeriesInstanceUID
        / f"{dataset.SOPInstanceUID}.dcm"
    )


def test_context_manager_with_plain_and_partial_callbacks(tmp_path: Path) -> None:
    seen: list[str] = []
    uploaded: list[dict[str, Any]] = []

    def handle_dcm(dcm: pydicom.Dataset) -> None:
        seen.append(dcm.SOPInstanceUID)

    def upload(dcm: pydicom.Dataset, db_conn_str: str) -> None:
        assert db_conn_str == "sqlite://"
        uploaded.append(dcm2dict(dcm))

    node_info = {"aetitle": "MY_AE", "port": 0, "ip": "127.0.0.1"}
    with StoreSCPServer(
        node_info,
        data_dir=tmp_path,
        callbacks=[handle_dcm, functools.partial(upload, db_conn_str="sqlite://")],
    ) as server:
        assert server.scp is not None and server.port
        _storescu(server.port, CT_SMALL)
    # Leaving the block shuts down gracefully: pending callbacks have run.
    assert server.scp is None
    expected = _expected_path(tmp_path, CT_SMALL)
    assert expected.is_file()
    assert seen == [pydicom.dcmread(CT_SMALL).SOPInstanceUID]
    assert uploaded[0]["00080018"]["Value"] == seen
    assert uploaded[0]["00100020"]["Name"] == "PatientId"


def test_non_blocking_run_and_shutdown(tmp_path: Path) -> None:
    server = StoreSCPServer(
        DicomNode(aetitle="MY_AE", ip="127.0.0.1", port=0),
        data_dir=tmp_path / "new" / "dir",
        sort_by=StorageSortKey.STUDY,
    )
    assert server.run() is None  # block=False is the default
    try:
        with pytest.raises(RuntimeError, match="already running"):
            server.run()
        assert server.port is not None
        _storescu(server.port, CT_SMALL)
    finally:
        server.shutdown()
    server.shutdown()  # a second shutdown is a no-op
    dataset = pydicom.dcmread(CT_SMALL)
    stored = (
        tmp_path
        / "new"
        / "dir"
        / dataset.StudyInstanceUID
        / dataset.SeriesInstanceUID
        / f"{dataset.SOPInstanceUID}.dcm"
    )
    assert stored.is_file()
    # And it can run again after a shutdown.
    server.run()
    server.shutdown()


def test_bind_failure_raises_at_run(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = StoreSCPServer({"aetitle": "MY_AE", "port": port, "ip": "127.0.0.1"}, tmp_path)
        with pytest.raises(OSError):
            server.run()
        assert server.scp is None


def test_node_without_port_and_db_session_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        StoreSCPServer({"aetitle": "MY_AE"}, tmp_path)
    with pytest.raises(ValueError, match="db_session"):
        StoreSCPServer({"aetitle": "MY_AE", "port": 0}, tmp_path, db_session=object())


def test_blocking_run_in_a_plain_script_stops_on_sigint(tmp_path: Path) -> None:
    need_executable("storescu")
    script = tmp_path / "receive.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import logging
            from aiodicom.net import StoreSCPServer

            logging.basicConfig(level=logging.INFO)
            received = []
            server = StoreSCPServer(
                {{"aetitle": "MY_AE", "port": 0, "ip": "127.0.0.1"}},
                data_dir={str(tmp_path / "data")!r},
                callbacks=[lambda ds: received.append(ds.SOPInstanceUID)],
            )
            server.run(block=True)
            print("callbacks:", len(received), flush=True)
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        port = None
        for _ in range(200):  # bounded: the server logs its port when it listens
            line = process.stderr.readline()
            if not line:
                break
            found = re.search(r"listening on \S+ port (\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the server never said it was listening"
        _storescu(port, CT_SMALL)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "callbacks: 1" in stdout
    assert _expected_path(tmp_path / "data", CT_SMALL).is_file()

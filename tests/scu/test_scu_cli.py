"""``aiodicom echoscu`` and ``aiodicom storescu`` as a user runs them, against aiodicom's
SCP started in the test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from scu_helpers import corpus_files

sys.path.insert(0, str(Path(__file__).parent.parent / "scp"))
from aiodicom import SCPConfig
from aiodicom.tls import server_context
from scp_helpers import LOOPBACK, running_scp, stored_files
from support import need_module

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(120):
        result = await anyio.run_process(
            [sys.executable, "-m", "aiodicom", *arguments], check=False
        )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def _copy(names: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    by_name = {f.path.name: f.path for f in corpus_files()}
    return [Path(shutil.copy(by_name[name], folder / name)) for name in names]


async def test_echoscu(tmp_path: Path) -> None:
    async with running_scp(tmp_path) as scp:
        result = await _cli("echoscu", "--repeat", "3", LOOPBACK, str(scp.port))
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("answered 0x0000 (success)") == 3
        assert scp.stats.echoes == 3


async def test_echoscu_rejected_exits_2(tmp_path: Path) -> None:
    config = SCPConfig(require_called_ae_title=True)
    async with running_scp(tmp_path, ae_title="RIGHT", config=config) as scp:
        result = await _cli("echoscu", "-aec", "WRONG", LOOPBACK, str(scp.port))
    assert result.returncode == 2
    assert "called-AE-title-not-recognized" in result.stderr


async def test_storescu_a_directory_with_a_non_dicom_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    sent = _copy(["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"], source)
    _copy(["rtplan.dcm"], source / "sub")
    (source / "README.txt").write_text("not DICOM")
    async with running_scp(tmp_path / "stored", sort_by="IMAGE") as scp:
        flat = await _cli("storescu", "-aec", "AIODICOM", LOOPBACK, str(scp.port), str(source))
        assert flat.returncode == 0, flat.stdout + flat.stderr
        assert "3 sent (0 with warnings), 0 failed, 1 skipped (not DICOM)" in flat.stdout
        assert "README.txt: no DICOM File Meta" in flat.stdout
        # Not a terminal: no progress bar.
        assert "\r" not in flat.stderr
        deep = await _cli(
            "storescu", "-r", "--associations", "2", "--window", "4",
            LOOPBACK, str(scp.port), str(source),
        )  # fmt: skip
        assert deep.returncode == 0, deep.stdout + deep.stderr
        assert "4 sent" in deep.stdout
        assert scp.stats.stored == 7
    assert len(stored_files(tmp_path / "stored")) == len(sent) + 1


async def test_storescu_reports_failures_with_their_status(tmp_path: Path) -> None:
    # UN_sequence.dcm has no SOP Class UID in its data set: our SCP answers 0xC001.
    source = tmp_path / "source"
    _copy(["CT_small.dcm", "UN_sequence.dcm"], source)
    async with running_scp(tmp_path / "stored", sort_by="IMAGE") as scp:
        result = await _cli("storescu", LOOPBACK, str(scp.port), str(source))
    assert result.returncode == 1
    assert "1 sent (0 with warnings), 1 failed" in result.stdout
    assert "failed: 1 0xC001" in result.stdout
    assert "UN_sequence.dcm: status 0xC001 (failure)" in result.stdout


async def test_storescu_without_a_peer_exits_1(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _copy(["CT_small.dcm"], source)
    async with running_scp(tmp_path / "stored") as scp:
        port = scp.port
    result = await _cli("storescu", "-to", "10", LOOPBACK, str(port), str(source))
    assert result.returncode == 1
    assert "0 sent" in result.stdout and "cannot connect" in result.stdout


async def test_storescu_missing_path_exits_2(tmp_path: Path) -> None:
    result = await _cli("storescu", LOOPBACK, "104", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "no such file or directory" in result.stderr


async def test_help_names_the_dcmtk_options() -> None:
    result = await _cli("storescu", "--help")
    for option in ("-aet", "-aec", "-pdu", "-to", "-ta", "-td", "--associations", "--window"):
        assert option in result.stdout


async def test_echoscu_and_storescu_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    trustme = need_module("trustme")
    authority = trustme.CA()
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(ca)
    server = authority.issue_cert("127.0.0.1")
    server_cert, server_key = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(server_cert)
    server.private_key_pem.write_to_path(server_key)
    client = authority.issue_cert("scu.example")
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(client_cert)
    client.private_key_pem.write_to_path(client_key)
    config = SCPConfig(
        ssl_context=server_context(
            server_cert, server_key, cafile=ca, require_client_certificate=True
        ),
        tls_handshake_timeout=10,
    )
    files = _copy(["CT_small.dcm"], tmp_path / "send")
    trust = ["--tls-ca", str(ca)]
    ours = ["--tls-cert", str(client_cert), "--tls-key", str(client_key)]
    async with running_scp(tmp_path / "data", config=config) as scp:
        port = str(scp.port)
        echo = await _cli("echoscu", "-to", "10", *trust, *ours, LOOPBACK, port)
        assert echo.returncode == 0, echo.stderr
        store = await _cli("storescu", "-to", "10", *trust, *ours, LOOPBACK, port, str(files[0]))
        assert store.returncode == 0, store.stderr
        # Without our certificate the server refuses the handshake; without TLS at all
        # the server's TLS layer cannot talk to us either.
        no_cert = await _cli("echoscu", "-to", "10", "-ta", "10", *trust, LOOPBACK, port)
        assert no_cert.returncode != 0
        plain = await _cli("echoscu", "-to", "10", "-ta", "5", LOOPBACK, port)
        assert plain.returncode != 0
    assert len(stored_files(tmp_path / "data")) == 1
    assert scp.stats.echoes == 1


async def test_tls_options_that_do_not_fit_are_a_usage_error(tmp_path: Path) -> None:
    lonely_cert = await _cli("echoscu", "--tls-cert", "x.pem", LOOPBACK, "104")
    assert lonely_cert.returncode == 2
    assert "--tls-cert/--tls-key need --tls or --tls-ca" in lonely_cert.stderr
    missing = await _cli("echoscu", "--tls-ca", str(tmp_path / "absent.pem"), LOOPBACK, "104")
    assert missing.returncode == 2
    assert "cannot load TLS files" in missing.stderr

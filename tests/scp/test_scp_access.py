"""Who gets in: TLS with client certificates, address allow-lists, user identity.

DCMTK's echoscu/storescu are the peers; certificates are made in the test (trustme).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pydicom
import pytest

from aiodicom import SCPConfig, associate, contexts_for_files
from aiodicom.protocol.pdu import UserIdentityRQ
from aiodicom.scu_files import ClientError
from aiodicom.tls import client_context, server_context
from scp_helpers import LOOPBACK, running_scp
from support import need_executable, need_module, pydicom_test_files

pytestmark = pytest.mark.anyio


class Certificates:
    def __init__(self, folder: Path) -> None:
        trustme = need_module("trustme")
        authority = trustme.CA()
        self.ca = folder / "ca.pem"
        authority.cert_pem.write_to_path(self.ca)
        self.server_cert, self.server_key = folder / "server.pem", folder / "server.key"
        server = authority.issue_cert("127.0.0.1", "localhost")
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        self.client_cert, self.client_key = folder / "client.pem", folder / "client.key"
        client = authority.issue_cert("dicom-client.example")
        client.cert_chain_pems[0].write_to_path(self.client_cert)
        client.private_key_pem.write_to_path(self.client_key)
        # A certificate from another authority, which the server must not trust.
        stranger = trustme.CA().issue_cert("stranger.example")
        self.stranger_cert, self.stranger_key = folder / "stranger.pem", folder / "stranger.key"
        stranger.cert_chain_pems[0].write_to_path(self.stranger_cert)
        stranger.private_key_pem.write_to_path(self.stranger_key)


async def _run(arguments: list[str]) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(60):
        return await anyio.run_process(arguments, check=False)


def _tls_config(certificates: Certificates) -> SCPConfig:
    return SCPConfig(
        ssl_context=server_context(
            certificates.server_cert,
            certificates.server_key,
            cafile=certificates.ca,
            require_client_certificate=True,
        ),
        tls_handshake_timeout=10,
    )


async def test_tls_with_client_certificates_from_dcmtk(tmp_path: Path) -> None:
    echoscu = need_executable("echoscu")
    storescu = need_executable("storescu")
    certificates = Certificates(tmp_path)
    source = next(p for p in pydicom_test_files() if p.name == "CT_small.dcm")
    async with running_scp(tmp_path / "data", config=_tls_config(certificates)) as scp:
        tls = ["+tls", str(certificates.client_key), str(certificates.client_cert)]
        trust = ["+cf", str(certificates.ca)]
        echo = await _run([echoscu, "-to", "10", *tls, *trust, LOOPBACK, str(scp.port)])
        assert echo.returncode == 0, echo.stderr.decode()
        store = await _run(
            [storescu, "-to", "10", *tls, *trust, LOOPBACK, str(scp.port), str(source)]
        )
        assert store.returncode == 0, store.stderr.decode()

        # Without a client certificate, or with one from an unknown authority: refused
        # in the handshake, and the server goes on serving.
        anonymous = await _run([echoscu, "-to", "10", "+tla", *trust, LOOPBACK, str(scp.port)])
        assert anonymous.returncode != 0
        stranger = await _run(
            [
                echoscu,
                "-to",
                "10",
                "+tls",
                str(certificates.stranger_key),
                str(certificates.stranger_cert),
                *trust,
                LOOPBACK,
                str(scp.port),
            ]
        )
        assert stranger.returncode != 0
        # Plain TCP to the TLS port: the "ClientHello" is not there; refused too.
        plain = await _run([echoscu, "-to", "5", LOOPBACK, str(scp.port)])
        assert plain.returncode != 0
        again = await _run([echoscu, "-to", "10", *tls, *trust, LOOPBACK, str(scp.port)])
        assert again.returncode == 0, again.stderr.decode()
        assert scp.stats.echoes == 2 and scp.stats.stored == 1
    dataset = pydicom.dcmread(source)
    assert len(list((tmp_path / "data").rglob(f"{dataset.SOPInstanceUID}.dcm"))) == 1


async def test_tls_client_context_speaks_to_the_server(tmp_path: Path) -> None:
    certificates = Certificates(tmp_path)
    async with running_scp(tmp_path / "data", config=_tls_config(certificates)) as scp:
        context = client_context(
            cafile=certificates.ca,
            certfile=certificates.client_cert,
            keyfile=certificates.client_key,
        )
        with anyio.fail_after(10):
            stream = await anyio.connect_tcp(
                LOOPBACK, scp.port, ssl_context=context, tls_standard_compatible=False
            )
            async with stream:
                # Any bytes will do: a DICOM-framed reply proves the TLS layer is up.
                await stream.send(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
                reply = await stream.receive()
        assert reply[:1] == b"\x07"  # an A-RELEASE-RQ before association: A-ABORT


@pytest.mark.parametrize(
    ("networks", "accepted"),
    [(("10.0.0.0/8",), False), (("127.0.0.0/8", "::1/128"), True), (("127.0.0.1",), True)],
)
async def test_address_allow_list(
    tmp_path: Path, networks: tuple[str, ...], accepted: bool
) -> None:
    echoscu = need_executable("echoscu")
    async with running_scp(tmp_path, config=SCPConfig(allowed_networks=networks)) as scp:
        result = await _run([echoscu, "-to", "10", LOOPBACK, str(scp.port)])
        if accepted:
            assert result.returncode == 0, result.stderr.decode()
        else:
            output = result.stdout.decode() + result.stderr.decode()
            assert result.returncode != 0
            # PS3.8 9.3.4: permanent (1), service-user (1), no reason given (1).
            assert "Rejected Permanent" in output and "No Reason" in output, output
            assert scp.stats.rejected_associations == 1


async def test_user_identity(tmp_path: Path) -> None:
    # echoscu has no user identity options; storescu has (-usr/-pwd).
    storescu = need_executable("storescu")
    source = str(next(p for p in pydicom_test_files() if p.name == "CT_small.dcm"))
    seen: list[tuple[UserIdentityRQ, str]] = []

    def verify(identity: UserIdentityRQ, calling_ae_title: str) -> bool:
        seen.append((identity, calling_ae_title))
        return identity.primary_field == b"alice" and identity.secondary_field == b"secret"

    config = SCPConfig(user_identity_verifier=verify, require_user_identity=True)
    async with running_scp(tmp_path, config=config) as scp:
        port = str(scp.port)
        base = [storescu, "-to", "10", "-aet", "WARD"]
        good = await _run([*base, "-usr", "alice", "-pwd", "secret", LOOPBACK, port, source])
        assert good.returncode == 0, good.stderr.decode()
        wrong = await _run([*base, "-usr", "alice", "-pwd", "guess", LOOPBACK, port, source])
        assert wrong.returncode != 0
        missing = await _run([*base, LOOPBACK, port, source])
        assert missing.returncode != 0
        assert scp.stats.stored == 1 and scp.stats.rejected_associations == 2
    assert seen[0][1] == "WARD"
    assert seen[0][0].identity_type == 2  # username and passcode


async def test_aiodicom_scu_over_tls(tmp_path: Path) -> None:
    certificates = Certificates(tmp_path)
    source = next(p for p in pydicom_test_files() if p.name == "CT_small.dcm")
    context = client_context(
        cafile=certificates.ca,
        certfile=certificates.client_cert,
        keyfile=certificates.client_key,
    )
    async with running_scp(tmp_path / "data", config=_tls_config(certificates)) as scp:
        async with associate(
            LOOPBACK, scp.port, contexts=contexts_for_files([source]), ssl_context=context
        ) as peer:
            assert (await peer.store(source)).status == 0x0000
        # The same SCU without a client certificate is refused in the handshake.
        with pytest.raises((ClientError, OSError, anyio.BrokenResourceError)):
            async with associate(
                LOOPBACK,
                scp.port,
                contexts=contexts_for_files([source]),
                ssl_context=client_context(cafile=certificates.ca),
                acse_timeout=10,
            ) as peer:
                await peer.echo()
        assert scp.stats.stored == 1

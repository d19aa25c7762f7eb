"""The SCP against hostile and broken peers, driven byte by byte over raw TCP sockets.

Each test connects with ``anyio.connect_tcp``, sends bytes of its own choosing and reads
the answer with a bounded wait. Waiting for the server to close a connection is a read
that ends at end-of-stream, never a sleep.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from pathlib import Path

import anyio
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from aiodicom import SCPConfig
from aiodicom.protocol.codes import AbortSource, PDUType
from aiodicom.protocol.dimse import (
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    encode_command,
)
from aiodicom.protocol.dimse_stream import encode_message
from aiodicom.protocol.pdu import (
    Abort,
    AssociateRJ,
    AssociateRQ,
    MaximumLength,
    PDataTF,
    PresentationContextRQ,
    PresentationDataValue,
)
from aiodicom.protocol.pdu_codec import decode_pdu, encode_pdu
from raw_peer import (
    STORE_CONTEXTS,
    VERIFICATION,
    ct_dataset,
    echo_works,
    message_bytes,
    raw_peer,
    tls_client_hello,
)
from scp_helpers import leftover_temporary_files, running_scp, stored_files

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "greeting",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n", id="http"),
        pytest.param(None, id="tls-client-hello"),
    ],
)
async def test_not_dicom_is_aborted_and_the_server_keeps_serving(
    tmp_path: Path, greeting: bytes | None
) -> None:
    data = greeting if greeting is not None else tls_client_hello()
    async with running_scp(tmp_path) as scp:
        async with raw_peer(scp.port) as peer:
            await peer.send(data)
            raw = await peer.receive_pdu()
            # PS3.8 Table 9-10, Sta2 + Evt19 (unrecognised PDU): AA-1, an A-ABORT, then
            # ARTIM runs until we close; a server that just closes is acceptable too.
            assert raw is None or raw[0] == PDUType.ABORT, raw
        await echo_works(scp.port)
        assert scp.stats.associations == 1


async def test_huge_associate_rq_length_is_refused_from_the_header(tmp_path: Path) -> None:
    async with running_scp(tmp_path) as scp:
        async with raw_peer(scp.port) as peer:
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                # An A-ASSOCIATE-RQ header announcing a body of 4 GiB - 16, and a few
                # bytes of it: the server must refuse it from the header alone.
                await peer.send(bytes([PDUType.ASSOCIATE_RQ, 0]) + (0xFFFF_FFF0).to_bytes(4, "big"))
                await peer.send(b"\x00\x01" + b"\x00" * 62)
                raw = await peer.receive_pdu()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert raw is None or raw[0] == PDUType.ABORT, raw
            if raw is not None:
                abort = decode_pdu(raw)
                assert isinstance(abort, Abort)
                assert abort.source == AbortSource.SERVICE_PROVIDER
            assert peak - before < 4 * 1024 * 1024, f"{(peak - before) / 1e6:.1f} MB allocated"
        await echo_works(scp.port)


# --- Timers --------------------------------------------------------------------------------


async def test_silent_connection_is_closed_by_artim(tmp_path: Path) -> None:
    config = SCPConfig(artim_timeout=0.5)
    async with running_scp(tmp_path, config=config) as scp:
        async with raw_peer(scp.port) as peer:
            started = anyio.current_time()
            # PS3.8 Table 9-10, Sta2 + Evt18 (ARTIM expired): AA-2, close; no PDU is sent.
            types = await peer.receive_until_closed(timeout=5.0)
            elapsed = anyio.current_time() - started
        assert types == []
        assert 0.4 <= elapsed < 4.0, elapsed
        await echo_works(scp.port)


async def test_idle_association_is_aborted_by_the_idle_timeout(tmp_path: Path) -> None:
    config = SCPConfig(idle_timeout=0.5)
    async with running_scp(tmp_path, config=config) as scp:
        async with raw_peer(scp.port) as peer:
            await peer.associate(STORE_CONTEXTS)
            assert (await peer.echo(context_id=3)).status == 0x0000
            started = anyio.current_time()
            await peer.expect_abort_and_close(timeout=5.0)
            elapsed = anyio.current_time() - started
        assert 0.4 <= elapsed < 4.0, elapsed
        await echo_works(scp.port)


async def test_peer_stopping_mid_data_set_hits_the_dimse_timeout(tmp_path: Path) -> None:
    config = SCPConfig(dimse_timeout=0.5, idle_timeout=30.0)
    data_dir = tmp_path / "incoming"
    uid = "1.2.826.0.1.3680043.10.7001"
    # Larger than the writer's in-memory buffer, so that part of it reaches a temp file.
    dataset = ct_dataset(uid, pixel_bytes=3 * 1024 * 1024)
    async with running_scp(data_dir, config=config) as scp:
        async with raw_peer(scp.port) as peer:
            await peer.associate(STORE_CONTEXTS)
            command = CStoreRQ(1, CTImageStorage, uid)
            message = message_bytes(peer, 1, command, dataset)
            await peer.send(message[: len(message) * 2 // 3])
            started = anyio.current_time()
            await peer.expect_abort_and_close(timeout=5.0)
            elapsed = anyio.current_time() - started
        assert elapsed < 4.0, elapsed
        await echo_works(scp.port)
        assert scp.stats.stored == 0
    assert stored_files(data_dir) == []
    assert leftover_temporary_files(data_dir) == []


async def test_peer_disappearing_mid_data_set_leaves_no_file(tmp_path: Path) -> None:
    config = SCPConfig(dimse_timeout=60.0, idle_timeout=60.0, shutdown_timeout=60.0)
    data_dir = tmp_path / "incoming"
    uid = "1.2.826.0.1.3680043.10.7002"
    dataset = ct_dataset(uid, pixel_bytes=3 * 1024 * 1024)
    with anyio.fail_after(20):
        async with running_scp(data_dir, config=config) as scp:
            async with raw_peer(scp.port) as peer:
                await peer.associate(STORE_CONTEXTS)
                message = message_bytes(peer, 1, CStoreRQ(1, CTImageStorage, uid), dataset)
                await peer.send(message[: len(message) // 2])
            # The socket is closed. The association is still in a message, so a graceful
            # shutdown would wait 60 s for it: leaving the block within the 20 s bound
            # proves that the server noticed the close and cleaned up on its own.
            started = anyio.current_time()
        assert anyio.current_time() - started < 15.0
    assert scp.stats.stored == 0
    assert stored_files(data_dir) == []
    assert leftover_temporary_files(data_dir) == []


# --- Broken P-DATA -------------------------------------------------------------------------


async def test_pdata_longer_than_our_maximum_length_is_aborted(tmp_path: Path) -> None:
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir) as scp:
        async with raw_peer(scp.port) as peer:
            await peer.associate(STORE_CONTEXTS)
            maximum = peer.server_max_pdu_length
            assert 0 < maximum <= SCPConfig().max_pdu_length
            uid = "1.2.826.0.1.3680043.10.7003"
            dataset = ct_dataset(uid, pixel_bytes=2 * maximum)
            # The command set in a PDU of its own, then one data-set PDV whose P-DATA-TF
            # body is 2 bytes over the Maximum Length we were given (PS3.8 D.1).
            command = encode_command(CStoreRQ(1, CTImageStorage, uid))
            await peer.send(encode_pdu(PDataTF((PresentationDataValue(1, 0x03, command),))))
            fragment = dataset[: maximum - 6 + 2]
            oversized = encode_pdu(PDataTF((PresentationDataValue(1, 0x00, fragment),)))
            assert int.from_bytes(oversized[2:6], "big") == maximum + 2
            # Aborted and closed while we were still sending is fine.
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await peer.send(oversized)
            abort = await peer.expect_abort()
            assert abort.source == AbortSource.SERVICE_PROVIDER
        await echo_works(scp.port)
    assert stored_files(data_dir) == []
    assert leftover_temporary_files(data_dir) == []


@pytest.mark.parametrize("context_id", [3, 99], ids=["rejected-context", "never-proposed"])
async def test_pdv_on_a_context_that_was_not_accepted_is_aborted(
    tmp_path: Path, context_id: int
) -> None:
    async with running_scp(tmp_path) as scp:
        async with raw_peer(scp.port) as peer:
            accept = await peer.associate(
                [
                    (VERIFICATION, [ExplicitVRLittleEndian]),
                    ("1.2.826.0.1.3680043.10.1.999", [ExplicitVRLittleEndian]),
                ]
            )
            results = {item.context_id: item.result for item in accept.presentation_contexts}
            assert results[1] == 0 and results[3] != 0, results
            await peer.send_message(context_id, CEchoRQ(message_id=7))
            abort = await peer.expect_abort()
            assert abort.source == AbortSource.SERVICE_PROVIDER
        await echo_works(scp.port)


async def test_associate_rj_is_not_an_abort(tmp_path: Path) -> None:
    """Sanity check of the raw peer itself: a wrong called AE title gets an RJ, not an abort."""
    config = SCPConfig(require_called_ae_title=True)
    async with running_scp(tmp_path, config=config) as scp, raw_peer(scp.port) as peer:
        await peer.send(
            encode_pdu(
                AssociateRQ(
                    "SOMEONE_ELSE",
                    "RAWPEER",
                    (PresentationContextRQ(1, VERIFICATION, (ExplicitVRLittleEndian,)),),
                    (MaximumLength(65536),),
                )
            )
        )
        raw = await peer.receive_pdu()
        assert raw is not None
        assert decode_pdu(raw) == AssociateRJ(1, 1, 7)


async def test_echo_with_a_non_ascii_sop_class_uid_is_answered(tmp_path: Path) -> None:
    # The decoded UID holds U+FFFD; echoing it back must not break the response.
    async with running_scp(tmp_path) as scp:
        async with raw_peer(scp.port) as peer:
            await peer.associate([(VERIFICATION, [ExplicitVRLittleEndian])])
            command = encode_command(CEchoRQ(message_id=3))
            assert command.count(b"1.2.840.10008.1.1") == 1
            hostile = command.replace(b"1.2.840.10008.1.1", b"1.2.840.10008.1.\xe9")
            await peer.send(encode_message(1, hostile, None, peer.server_max_pdu_length))
            response = await peer.receive_command()
            assert isinstance(response, CEchoRSP) and response.status == 0x0000
            assert response.affected_sop_class_uid is None
            await peer.release()
        await echo_works(scp.port)

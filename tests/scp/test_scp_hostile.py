"""The SCP against hostile and broken peers, driven byte by byte over raw TCP sockets.

Each test connects with ``anyio.connect_tcp``, sends bytes of its own choosing and reads
the answer with a bounded wait. Waiting for the server to close a connection is a read
that ends at end-of-stream, never a sleep. :class:`RawPeer` is also used by
``test_scp_lifecycle.py``.
"""

from __future__ import annotations

import contextlib
import io
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pydicom
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from aiodicom import SCPConfig
from aiodicom.protocol.codes import AbortSource, PDUType
from aiodicom.protocol.dimse import (
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    CStoreRSP,
    DimseCommand,
    decode_command,
    encode_command,
)
from aiodicom.protocol.dimse_stream import encode_message
from aiodicom.protocol.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    ImplementationClassUID,
    MaximumLength,
    PDataTF,
    PresentationContextRQ,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
)
from aiodicom.protocol.pdu_codec import decode_pdu, encode_pdu
from scp_helpers import LOOPBACK, leftover_temporary_files, running_scp, stored_files
from support import pydicom_test_files, split_part10

pytestmark = pytest.mark.anyio

VERIFICATION = "1.2.840.10008.1.1"
# Every wait for the server is bounded by this; the server's own timers in these tests
# are a fraction of it.
READ_TIMEOUT = 10.0
# PS3.8 9.3.1: type (1), reserved (1), PDU-length (4, big endian).
PDU_HEADER_LENGTH = 6


# --- A hand-driven requestor ------------------------------------------------------------------


class ServerClosed(Exception):
    """The server closed the connection where a PDU was expected."""


class RawPeer:
    """An association requestor whose every byte is chosen by the test."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.receiver = BufferedByteReceiveStream(stream)
        self.server_max_pdu_length = 0

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive_pdu(self, timeout: float = READ_TIMEOUT) -> bytes | None:
        """The next whole PDU, header included, or None once the server has closed."""
        with anyio.fail_after(timeout):
            try:
                header = await self.receiver.receive_exactly(PDU_HEADER_LENGTH)
                length = int.from_bytes(header[2:6], "big")
                return header + await self.receiver.receive_exactly(length)
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            except OSError:  # connection reset by the server
                return None

    async def receive_until_closed(self, timeout: float = READ_TIMEOUT) -> list[int]:
        """The types of the PDUs received until the server closes (bounded)."""
        types: list[int] = []
        with anyio.fail_after(timeout):
            while (pdu := await self.receive_pdu(timeout)) is not None:
                types.append(pdu[0])
                if len(types) > 1000:
                    raise AssertionError("the server keeps sending without closing")
        return types

    async def expect_abort(self, timeout: float = READ_TIMEOUT) -> Abort:
        """The server's next PDU is an A-ABORT.

        After an A-ABORT it sent on a protocol error, the server waits (PS3.8 Sta13) for
        us to close or for ARTIM, so the test does not wait for its close.
        """
        raw = await self.receive_pdu(timeout)
        assert raw is not None, "closed without an A-ABORT"
        abort = decode_pdu(raw)
        assert isinstance(abort, Abort), abort
        return abort

    async def expect_abort_and_close(self, timeout: float = READ_TIMEOUT) -> None:
        """The server sends an A-ABORT (and nothing else) and closes."""
        types = await self.receive_until_closed(timeout)
        assert types == [PDUType.ABORT], types

    async def associate(
        self,
        contexts: Sequence[tuple[str, Sequence[str]]],
        *,
        called_ae_title: str = "AIODICOM",
        calling_ae_title: str = "RAWPEER",
        max_pdu_length: int = 65536,
    ) -> AssociateAC:
        """Propose ``contexts`` (IDs 1, 3, 5...) and return the A-ASSOCIATE-AC."""
        request = AssociateRQ(
            called_ae_title=called_ae_title,
            calling_ae_title=calling_ae_title,
            presentation_contexts=tuple(
                PresentationContextRQ(2 * index + 1, abstract, tuple(syntaxes))
                for index, (abstract, syntaxes) in enumerate(contexts)
            ),
            user_items=(MaximumLength(max_pdu_length), ImplementationClassUID("1.2.826.0.1.9")),
        )
        await self.send(encode_pdu(request))
        raw = await self.receive_pdu()
        if raw is None:
            raise ServerClosed("closed instead of answering the A-ASSOCIATE-RQ")
        answer = decode_pdu(raw)
        assert isinstance(answer, AssociateAC), answer
        item = answer.find_user_item(MaximumLength)
        self.server_max_pdu_length = item.maximum_length if item is not None else 0
        return answer

    async def send_message(
        self, context_id: int, command: DimseCommand, dataset: bytes | None = None
    ) -> None:
        await self.send(message_bytes(self, context_id, command, dataset))

    async def receive_command(self, timeout: float = READ_TIMEOUT) -> DimseCommand:
        """The next DIMSE response (responses here never carry a data set)."""
        command = bytearray()
        with anyio.fail_after(timeout):
            while True:
                raw = await self.receive_pdu(timeout)
                if raw is None:
                    raise ServerClosed("closed instead of answering")
                pdu = decode_pdu(raw)
                if not isinstance(pdu, PDataTF):
                    raise AssertionError(f"expected P-DATA-TF, got {pdu!r}")
                for value in pdu.values:
                    assert value.is_command, "a response carried a data set"
                    command += value.data
                    if value.is_last:
                        return decode_command(bytes(command))

    async def echo(self, context_id: int = 1, message_id: int = 1) -> CEchoRSP:
        await self.send_message(context_id, CEchoRQ(message_id=message_id))
        response = await self.receive_command()
        assert isinstance(response, CEchoRSP), response
        return response

    async def store(
        self, context_id: int, sop_instance_uid: str, dataset: bytes, message_id: int = 1
    ) -> CStoreRSP:
        command = CStoreRQ(
            message_id=message_id,
            affected_sop_class_uid=CTImageStorage,
            affected_sop_instance_uid=sop_instance_uid,
        )
        await self.send_message(context_id, command, dataset)
        response = await self.receive_command()
        assert isinstance(response, CStoreRSP), response
        return response

    async def release(self) -> None:
        await self.send(encode_pdu(ReleaseRQ()))
        raw = await self.receive_pdu()
        assert raw is not None and isinstance(decode_pdu(raw), ReleaseRP)


def message_bytes(
    peer: RawPeer, context_id: int, command: DimseCommand, dataset: bytes | None
) -> bytes:
    """Every P-DATA-TF of one message, cut to the server's Maximum Length."""
    return encode_message(context_id, encode_command(command), dataset, peer.server_max_pdu_length)


@asynccontextmanager
async def raw_peer(port: int) -> AsyncIterator[RawPeer]:
    stream = await anyio.connect_tcp(LOOPBACK, port)
    async with stream:
        yield RawPeer(stream)


async def echo_works(port: int) -> None:
    """A fresh association can still do a C-ECHO and release."""
    async with raw_peer(port) as peer:
        await peer.associate([(VERIFICATION, [ExplicitVRLittleEndian])])
        assert (await peer.echo()).status == 0x0000
        await peer.release()


STORE_CONTEXTS: list[tuple[str, list[str]]] = [
    (CTImageStorage, [ExplicitVRLittleEndian]),
    (VERIFICATION, ["1.2.840.10008.1.2"]),
]


def ct_dataset(
    sop_instance_uid: str, *, pixel_bytes: int | None = None, patient_name: str = "RAW^PEER"
) -> bytes:
    """CT_small as an Explicit VR Little Endian data set with our own UID.

    ``pixel_bytes`` replaces the image by a generated one of about that size (16-bit
    samples), for data sets of several megabytes.
    """
    source = next(path for path in pydicom_test_files() if path.name == "CT_small.dcm")
    dataset = pydicom.dcmread(source)
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    dataset.PatientName = patient_name
    if pixel_bytes is not None:
        columns = 1024
        rows = max(1, pixel_bytes // (2 * columns))
        dataset.Rows, dataset.Columns = rows, columns
        # A repeating ramp rather than zeros: a lost or shifted piece would show.
        ramp = bytes(range(256)) * (2 * columns // 256)
        dataset.PixelData = ramp * rows
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return bytes(split_part10(buffer.getvalue())[1])


# --- Not DICOM at all -----------------------------------------------------------------------------


def tls_client_hello() -> bytes:
    """A real TLS ClientHello, produced in memory by the ssl module (no network)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_hostname="aiodicom.test")
    with pytest.raises(ssl.SSLWantReadError):
        connection.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # TLS record type "handshake"
    return hello


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

"""A raw DICOM peer for the hostile and lifecycle tests: our codecs over a plain socket.

Every read is bounded in time; waiting for the server to close is a read that ends at
end-of-stream, never a sleep.
"""

from __future__ import annotations

import io
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import pydicom
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from aiodicom.protocol.codes import PDUType
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
    AssociateRQ,
    ImplementationClassUID,
    MaximumLength,
    PDataTF,
    PresentationContextRQ,
    ReleaseRP,
    ReleaseRQ,
)
from aiodicom.protocol.pdu_codec import decode_pdu, encode_pdu
from scp_helpers import LOOPBACK
from support import pydicom_test_files, split_part10

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

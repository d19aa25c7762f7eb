"""DIMSE messages over P-DATA-TF: fragmenting within the peer's limit, and reassembly."""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiodicom.protocol.codes import AbortReason
from aiodicom.protocol.dimse import (
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    DimseDecodeError,
    OtherCommand,
    encode_command,
)
from aiodicom.protocol.dimse_stream import (
    UNLIMITED_PDU_LENGTH,
    MessageAssembler,
    encode_message,
    iter_dataset_pdus,
    iter_message_pdus,
)
from aiodicom.protocol.errors import RemoteProtocolError
from aiodicom.protocol.events import DataSetChunkReceived, DimseCommandReceived
from aiodicom.protocol.pdu import PDVFragment
from support import need_module

STORE_RQ = CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6.7.8.9")
STORE_RQ_BYTES = encode_command(STORE_RQ)
ECHO_RQ_BYTES = encode_command(CEchoRQ(2))


# --- A small independent parser of P-DATA-TF PDUs (PS3.8 9.3.5) ----------------------------


@dataclass
class ParsedPDV:
    pdu_index: int
    context_id: int
    control: int
    data: bytes


def parse_pdata_stream(stream: bytes, max_pdu_length: int) -> list[ParsedPDV]:
    """Split a byte stream of P-DATA-TF PDUs into PDVs, checking every length."""
    pdvs: list[ParsedPDV] = []
    offset = 0
    pdu_index = 0
    while offset < len(stream):
        pdu_type, _reserved, pdu_length = struct.unpack_from(">BBI", stream, offset)
        assert pdu_type == 0x04
        assert pdu_length <= max_pdu_length, "PDU body over the peer's Maximum Length"
        body_end = offset + 6 + pdu_length
        assert body_end <= len(stream)
        position = offset + 6
        assert position < body_end, "a P-DATA-TF holds at least one PDV"
        while position < body_end:
            item_length, context_id, control = struct.unpack_from(">IBB", stream, position)
            assert item_length >= 2
            data_end = position + 4 + item_length
            assert data_end <= body_end, "PDV crosses the end of its PDU"
            pdvs.append(ParsedPDV(pdu_index, context_id, control, stream[position + 6 : data_end]))
            position = data_end
        offset = body_end
        pdu_index += 1
    return pdvs


def check_message(
    pdvs: list[ParsedPDV], context_id: int, command: bytes, dataset: bytes | None
) -> None:
    """The PDVs carry exactly ``command`` then ``dataset``, with the right control bits."""
    command_pdvs = [pdv for pdv in pdvs if pdv.control & 0x01]
    data_pdvs = [pdv for pdv in pdvs if not pdv.control & 0x01]
    assert pdvs[: len(command_pdvs)] == command_pdvs, "command fragments come first"
    assert all(pdv.context_id == context_id for pdv in pdvs)
    assert all(pdv.control & ~0x03 == 0 for pdv in pdvs), "reserved bits are zero"
    assert b"".join(pdv.data for pdv in command_pdvs) == command
    assert [bool(pdv.control & 0x02) for pdv in command_pdvs] == [False] * (
        len(command_pdvs) - 1
    ) + [True]
    if dataset is None:
        assert data_pdvs == []
        return
    assert b"".join(pdv.data for pdv in data_pdvs) == dataset
    assert [bool(pdv.control & 0x02) for pdv in data_pdvs] == [False] * (len(data_pdvs) - 1) + [
        True
    ]
    # PS3.8 E.1: every fragment is even (only the data set's own length can make the last
    # one odd).
    assert all(len(pdv.data) % 2 == 0 for pdv in command_pdvs[:-1] + data_pdvs[:-1])


# --- Outgoing --------------------------------------------------------------------------------


def test_small_message_fits_one_pdu_with_both_pdvs() -> None:
    dataset = b"\x08\x00\x16\x00\x04\x00\x00\x001.2\x00"
    stream = encode_message(1, STORE_RQ_BYTES, dataset, 16384)
    pdvs = parse_pdata_stream(stream, 16384)
    assert [pdv.pdu_index for pdv in pdvs] == [0, 0]
    assert [pdv.control for pdv in pdvs] == [0x03, 0x02]
    check_message(pdvs, 1, STORE_RQ_BYTES, dataset)
    # The whole PDU, written out by hand: header, command PDV, data PDV.
    assert stream == (
        b"\x04\x00"
        + (6 + len(STORE_RQ_BYTES) + 6 + len(dataset)).to_bytes(4, "big")
        + (len(STORE_RQ_BYTES) + 2).to_bytes(4, "big")
        + b"\x01\x03"
        + STORE_RQ_BYTES
        + (len(dataset) + 2).to_bytes(4, "big")
        + b"\x01\x02"
        + dataset
    )


def test_command_only_message() -> None:
    stream = encode_message(3, ECHO_RQ_BYTES, None, 16384)
    assert stream == (
        b"\x04\x00"
        + (len(ECHO_RQ_BYTES) + 6).to_bytes(4, "big")
        + (len(ECHO_RQ_BYTES) + 2).to_bytes(4, "big")
        + b"\x03\x03"
        + ECHO_RQ_BYTES
    )


def test_pdu_body_is_exactly_the_limit_when_full() -> None:
    # PS3.8 D.1: Maximum Length bounds the PDU-length field, i.e. the PDV items with their
    # 4-byte length fields but not the 6-byte PDU header.
    max_pdu_length = 1000
    stream = encode_message(1, STORE_RQ_BYTES, bytes(10_000), max_pdu_length)
    lengths = []
    offset = 0
    while offset < len(stream):
        lengths.append(int.from_bytes(stream[offset + 2 : offset + 6], "big"))
        offset += 6 + lengths[-1]
    assert max(lengths) == max_pdu_length
    assert lengths[1:-1] == [max_pdu_length] * (len(lengths) - 2)


def test_unlimited_uses_default_pdu_size() -> None:
    dataset = bytes(3 * UNLIMITED_PDU_LENGTH)
    pdvs = parse_pdata_stream(encode_message(1, STORE_RQ_BYTES, dataset, 0), UNLIMITED_PDU_LENGTH)
    check_message(pdvs, 1, STORE_RQ_BYTES, dataset)
    assert len({pdv.pdu_index for pdv in pdvs}) == 4


def test_empty_dataset_still_sends_a_last_data_pdv() -> None:
    pdvs = parse_pdata_stream(encode_message(1, STORE_RQ_BYTES, b"", 16384), 16384)
    assert [(pdv.control, pdv.data) for pdv in pdvs] == [(0x03, STORE_RQ_BYTES), (0x02, b"")]
    tight = len(STORE_RQ_BYTES) + 6
    pdvs = parse_pdata_stream(encode_message(1, STORE_RQ_BYTES, b"", tight), tight)
    assert [(pdv.pdu_index, pdv.control) for pdv in pdvs] == [(0, 0x03), (1, 0x02)]


def test_too_small_limits_are_refused() -> None:
    for max_pdu_length in (1, 6, 7, -1):
        with pytest.raises(ValueError):
            encode_message(1, ECHO_RQ_BYTES, None, max_pdu_length)
    # 8 is the smallest limit that carries a 2-byte fragment.
    pdvs = parse_pdata_stream(encode_message(1, ECHO_RQ_BYTES, b"ab" * 5, 8), 8)
    check_message(pdvs, 1, ECHO_RQ_BYTES, b"ab" * 5)


@settings(max_examples=300)
@given(
    max_pdu_length=st.one_of(
        st.integers(8, 400),
        st.sampled_from([0, 4096, 16382, 16384, 32768, 65536]),
        st.integers(400, 70_000),
    ),
    command=st.sampled_from([STORE_RQ_BYTES, ECHO_RQ_BYTES, bytes(range(256)) * 3]),
    dataset=st.none() | st.binary(max_size=3000) | st.integers(0, 150_000).map(bytes),
    context_id=st.integers(1, 255).map(lambda n: n | 1),
)
def test_fragmenting_reproduces_the_message(
    max_pdu_length: int, command: bytes, dataset: bytes | None, context_id: int
) -> None:
    stream = encode_message(context_id, command, dataset, max_pdu_length)
    pdvs = parse_pdata_stream(stream, max_pdu_length or UNLIMITED_PDU_LENGTH)
    check_message(pdvs, context_id, command, dataset)

    # The streaming form yields the same bytes when the data is written after each header.
    assert dataset is None or _join_streamed(context_id, command, dataset, max_pdu_length) == (
        stream
    )


def _join_streamed(context_id: int, command: bytes, dataset: bytes, max_pdu_length: int) -> bytes:
    out = bytearray()
    view = memoryview(dataset)
    offset = 0
    for header, data_length in iter_message_pdus(context_id, command, len(dataset), max_pdu_length):
        out += header
        out += view[offset : offset + data_length]
        offset += data_length
    assert offset == len(dataset)
    return bytes(out)


@given(st.integers(0, 100_000), st.sampled_from([8, 100, 16384, 0]))
def test_iter_dataset_pdus_alone(dataset_length: int, max_pdu_length: int) -> None:
    dataset = bytes(range(256)) * (dataset_length // 256) + bytes(dataset_length % 256)
    out = bytearray()
    offset = 0
    for header, data_length in iter_dataset_pdus(5, dataset_length, max_pdu_length):
        out += header + dataset[offset : offset + data_length]
        offset += data_length
    pdvs = parse_pdata_stream(bytes(out), max_pdu_length or UNLIMITED_PDU_LENGTH)
    assert all(pdv.control & 0x01 == 0 and pdv.context_id == 5 for pdv in pdvs)
    assert b"".join(pdv.data for pdv in pdvs) == dataset
    assert [pdv.control for pdv in pdvs] == [0x00] * (len(pdvs) - 1) + [0x02]


def test_streamed_headers_are_small() -> None:
    # Data PDUs carry only their 12 header bytes: the data set itself is never copied.
    pdus = list(iter_message_pdus(1, STORE_RQ_BYTES, 10 * 16384, 16384))
    assert all(len(header) == 12 for header, _ in pdus[1:])


# --- Incoming --------------------------------------------------------------------------------


def fragments_of(stream: bytes, pieces: int = 1) -> list[PDVFragment]:
    """The PDVFragments a PDU reader would hand out, each PDV cut in ``pieces`` pieces."""
    result = []
    for pdv in parse_pdata_stream(stream, 1 << 32):
        data = memoryview(pdv.data)
        cuts = sorted({0, len(data), *(len(data) * i // pieces for i in range(1, pieces))})
        bounds = list(itertools.pairwise(cuts)) or [(0, 0)]
        for start, end in bounds:
            result.append(
                PDVFragment(
                    context_id=pdv.context_id,
                    is_command=bool(pdv.control & 0x01),
                    last_fragment=bool(pdv.control & 0x02),
                    pdv_complete=end == len(data),
                    data=data[start:end],
                )
            )
    return result


def feed_all(
    assembler: MessageAssembler, fragments: list[PDVFragment]
) -> list[DimseCommandReceived | DataSetChunkReceived]:
    events = []
    for fragment in fragments:
        event = assembler.feed(fragment)
        if event is not None:
            events.append(event)
    return events


@pytest.mark.parametrize("pieces", [1, 3])
@pytest.mark.parametrize("max_pdu_length", [8, 64, 1000, 16384])
def test_assembles_command_and_dataset(max_pdu_length: int, pieces: int) -> None:
    dataset = bytes(range(256)) * 20
    stream = encode_message(7, STORE_RQ_BYTES, dataset, max_pdu_length)
    assembler = MessageAssembler()
    events = feed_all(assembler, fragments_of(stream, pieces))
    assert events[0] == DimseCommandReceived(7, STORE_RQ)
    chunks = events[1:]
    assert all(isinstance(chunk, DataSetChunkReceived) for chunk in chunks)
    assert b"".join(bytes(chunk.data) for chunk in chunks) == dataset  # type: ignore[union-attr]
    assert [chunk.last for chunk in chunks] == [False] * (len(chunks) - 1) + [True]  # type: ignore[union-attr]
    assert not assembler.in_message and not assembler.expecting_dataset


def test_dataset_chunks_are_the_fed_views() -> None:
    assembler = MessageAssembler()
    assembler.feed(PDVFragment(1, True, True, True, memoryview(STORE_RQ_BYTES)))
    buffer = bytearray(b"abcd")
    view = memoryview(buffer)
    chunk = assembler.feed(PDVFragment(1, False, False, True, view))
    assert isinstance(chunk, DataSetChunkReceived)
    assert chunk.data is view, "no copy of data set bytes"


def test_command_survives_reuse_of_the_readers_buffer() -> None:
    # Command pieces are copied: the reader may overwrite its buffer after feed returns.
    assembler = MessageAssembler()
    buffer = bytearray(STORE_RQ_BYTES[:20])
    assert assembler.feed(PDVFragment(1, True, True, False, memoryview(buffer))) is None
    buffer[:] = bytes(20)
    event = assembler.feed(PDVFragment(1, True, True, True, memoryview(STORE_RQ_BYTES[20:])))
    assert event == DimseCommandReceived(1, STORE_RQ)


def test_state_properties_through_a_message() -> None:
    assembler = MessageAssembler()
    assert (assembler.in_message, assembler.expecting_dataset, assembler.context_id) == (
        False,
        False,
        None,
    )
    assembler.feed(PDVFragment(3, True, False, True, memoryview(STORE_RQ_BYTES[:40])))
    assert (assembler.in_message, assembler.expecting_dataset, assembler.context_id) == (
        True,
        False,
        3,
    )
    assembler.feed(PDVFragment(3, True, True, True, memoryview(STORE_RQ_BYTES[40:])))
    assert (assembler.in_message, assembler.expecting_dataset) == (True, True)
    assembler.feed(PDVFragment(3, False, False, True, memoryview(b"ab")))
    assert assembler.expecting_dataset
    # An empty middle piece is skipped.
    assert assembler.feed(PDVFragment(3, False, False, True, memoryview(b""))) is None
    last = assembler.feed(PDVFragment(3, False, True, True, memoryview(b"")))
    assert last == DataSetChunkReceived(3, memoryview(b""), True)
    assert (assembler.in_message, assembler.expecting_dataset) == (False, False)


def test_messages_follow_one_another_on_different_contexts() -> None:
    assembler = MessageAssembler()
    stream = (
        encode_message(1, ECHO_RQ_BYTES, None, 16384)
        + encode_message(3, STORE_RQ_BYTES, b"xy" * 10, 16)
        + encode_message(5, ECHO_RQ_BYTES, None, 16384)
    )
    events = feed_all(assembler, fragments_of(stream))
    commands = [event for event in events if isinstance(event, DimseCommandReceived)]
    assert [(event.context_id, event.command) for event in commands] == [
        (1, CEchoRQ(2)),
        (3, STORE_RQ),
        (5, CEchoRQ(2)),
    ]
    assert not assembler.in_message


def test_other_command_with_dataset_expects_one() -> None:
    find_rq = OtherCommand(0x0020, 9, True, {0x0002: b"1.2.3\x00"})
    assembler = MessageAssembler()
    event = assembler.feed(PDVFragment(1, True, True, True, memoryview(encode_command(find_rq))))
    assert event == DimseCommandReceived(1, find_rq)
    assert assembler.expecting_dataset


# --- Incoming protocol errors ------------------------------------------------------------


def _expect_error(assembler: MessageAssembler, fragment: PDVFragment, reason: int) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        assembler.feed(fragment)
    assert caught.value.abort_reason == reason


UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER
INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_data_fragment_before_any_command() -> None:
    _expect_error(
        MessageAssembler(), PDVFragment(1, False, True, True, memoryview(b"ab")), UNEXPECTED
    )


def test_data_fragment_after_command_without_dataset() -> None:
    assembler = MessageAssembler()
    assembler.feed(PDVFragment(1, True, True, True, memoryview(ECHO_RQ_BYTES)))
    _expect_error(assembler, PDVFragment(1, False, True, True, memoryview(b"ab")), UNEXPECTED)


def test_data_fragment_during_incomplete_command() -> None:
    assembler = MessageAssembler()
    assembler.feed(PDVFragment(1, True, False, True, memoryview(STORE_RQ_BYTES[:10])))
    _expect_error(assembler, PDVFragment(1, False, True, True, memoryview(b"ab")), UNEXPECTED)


def test_command_fragment_while_dataset_expected() -> None:
    assembler = MessageAssembler()
    assembler.feed(PDVFragment(1, True, True, True, memoryview(STORE_RQ_BYTES)))
    assembler.feed(PDVFragment(1, False, False, True, memoryview(b"ab")))
    _expect_error(
        assembler, PDVFragment(1, True, True, True, memoryview(ECHO_RQ_BYTES)), UNEXPECTED
    )


def test_data_fragment_on_another_context() -> None:
    assembler = MessageAssembler()
    assembler.feed(PDVFragment(1, True, True, True, memoryview(STORE_RQ_BYTES)))
    _expect_error(assembler, PDVFragment(3, False, True, True, memoryview(b"ab")), UNEXPECTED)


def test_command_fragment_on_another_context_mid_command() -> None:
    assembler = MessageAssembler()
    assembler.feed(PDVFragment(1, True, False, True, memoryview(STORE_RQ_BYTES[:10])))
    fragment = PDVFragment(3, True, True, True, memoryview(STORE_RQ_BYTES[10:]))
    _expect_error(assembler, fragment, UNEXPECTED)


def test_command_over_the_cap() -> None:
    assembler = MessageAssembler(max_command_length=100)
    assembler.feed(PDVFragment(1, True, False, True, memoryview(bytes(100))))
    _expect_error(assembler, PDVFragment(1, True, False, False, memoryview(b"ab")), INVALID)


def test_default_cap_stops_an_endless_command() -> None:
    assembler = MessageAssembler()
    piece = memoryview(bytes(16384))
    with pytest.raises(RemoteProtocolError) as caught:
        for _ in range(100):
            assembler.feed(PDVFragment(1, True, False, True, piece))
    assert caught.value.abort_reason == INVALID


def test_undecodable_command() -> None:
    assembler = MessageAssembler()
    with pytest.raises(DimseDecodeError):
        assembler.feed(PDVFragment(1, True, True, True, memoryview(ECHO_RQ_BYTES[:-2])))


def test_c_echo_rsp_round_trips_through_stream() -> None:
    rsp = CEchoRSP(2, 0)
    events = feed_all(
        MessageAssembler(), fragments_of(encode_message(1, encode_command(rsp), None, 8), 2)
    )
    assert events == [DimseCommandReceived(1, rsp)]


# --- pynetdicom as a peer: its fragments into our assembler, ours into its decoder --------


def _pynetdicom_store_rq(dataset: bytes) -> object:
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE

    primitive = C_STORE()
    primitive.MessageID = STORE_RQ.message_id
    primitive.AffectedSOPClassUID = STORE_RQ.affected_sop_class_uid
    primitive.AffectedSOPInstanceUID = STORE_RQ.affected_sop_instance_uid
    primitive.Priority = STORE_RQ.priority
    primitive.DataSet = BytesIO(dataset)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return message


@pytest.mark.parametrize("max_pdu_length", [16, 1000, 16382])
def test_pynetdicom_fragments_reassemble(max_pdu_length: int) -> None:
    need_module("pynetdicom")
    dataset = bytes(range(256)) * 40
    message = _pynetdicom_store_rq(dataset)
    fragments = [
        PDVFragment(context_id, bool(value[0] & 1), bool(value[0] & 2), True, memoryview(value)[1:])
        for primitive in message.encode_msg(5, max_pdu_length)  # type: ignore[attr-defined]
        for context_id, value in primitive.presentation_data_value_list
    ]
    events = feed_all(MessageAssembler(), fragments)
    assert events[0] == DimseCommandReceived(5, STORE_RQ)
    assert b"".join(bytes(event.data) for event in events[1:]) == dataset  # type: ignore[union-attr]
    assert events[-1].last  # type: ignore[union-attr]


@pytest.mark.parametrize("max_pdu_length", [8, 1000, 16384])
def test_pynetdicom_reassembles_our_fragments(max_pdu_length: int) -> None:
    need_module("pynetdicom")
    from pynetdicom.dimse_messages import DIMSEMessage
    from pynetdicom.pdu_primitives import P_DATA

    dataset = bytes(range(256)) * 40
    stream = encode_message(5, STORE_RQ_BYTES, dataset, max_pdu_length)
    pdvs = parse_pdata_stream(stream, max_pdu_length)
    message = DIMSEMessage()
    complete = False
    for pdu_index in sorted({pdv.pdu_index for pdv in pdvs}):
        primitive = P_DATA()
        primitive.presentation_data_value_list = [
            [pdv.context_id, bytes([pdv.control]) + pdv.data]
            for pdv in pdvs
            if pdv.pdu_index == pdu_index
        ]
        assert not complete, "pynetdicom saw the end of the message too early"
        complete = message.decode_msg(primitive)
    assert complete
    assert message.command_set.AffectedSOPInstanceUID == STORE_RQ.affected_sop_instance_uid
    assert message.command_set.MessageID == STORE_RQ.message_id
    assert message.data_set.getvalue() == dataset

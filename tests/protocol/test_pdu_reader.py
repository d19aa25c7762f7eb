"""PDUReader: framing at any split point, length caps before buffering, streamed P-DATA."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_pdu_codec import GOLDEN_RQ, VALUE_RQ, pdus

from aiodicom.protocol.codes import AbortReason
from aiodicom.protocol.errors import RemoteProtocolError
from aiodicom.protocol.pdu import (
    PDU,
    Abort,
    PDataStarted,
    PDataTF,
    PDVFragment,
    PresentationDataValue,
    ReleaseRQ,
)
from aiodicom.protocol.pdu_codec import encode_pdata_header, encode_pdu, encode_pdv_header
from aiodicom.protocol.pdu_reader import PDUReader

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE

# What a stream of PDUs should come out as: whole PDUs, or for P-DATA-TF its start and
# then each PDV with its data joined from however many fragments it came in.
Expected = tuple[object, ...]


def expected_items(values: list[PDU]) -> list[Expected]:
    items: list[Expected] = []
    for value in values:
        if isinstance(value, PDataTF):
            items.append(("started", len(encode_pdu(value)) - 6))
            for pdv in value.values:
                items.append(("pdv", pdv.context_id, pdv.is_command, pdv.is_last, pdv.data))
        else:
            items.append(("pdu", value))
    return items


def drain(reader: PDUReader, limit: int = 100_000) -> list[PDU | PDataStarted | PDVFragment]:
    out: list[PDU | PDataStarted | PDVFragment] = []
    for _ in range(limit):
        item = reader.next_item()
        if item is None:
            return out
        out.append(item)
    raise AssertionError("reader never asked for more bytes")


def collapse(items: list[PDU | PDataStarted | PDVFragment]) -> list[Expected]:
    """Join PDV fragments, checking their flags agree and only the last completes the PDV."""
    out: list[Expected] = []
    pieces: list[PDVFragment] = []
    for item in items:
        if isinstance(item, PDVFragment):
            assert isinstance(item.data, memoryview)
            pieces.append(item)
            if item.pdv_complete:
                first = pieces[0]
                flags = {(p.context_id, p.is_command, p.last_fragment) for p in pieces}
                assert len(flags) == 1
                assert [p.pdv_complete for p in pieces] == [False] * (len(pieces) - 1) + [True]
                data = b"".join(bytes(p.data) for p in pieces)
                out.append(("pdv", first.context_id, first.is_command, first.last_fragment, data))
                pieces = []
        else:
            assert not pieces, "a PDV was left incomplete"
            if isinstance(item, PDataStarted):
                out.append(("started", item.length))
            else:
                out.append(("pdu", item))
    assert not pieces
    return out


def feed_in_pieces(stream: bytes, cuts: list[int]) -> list[Expected]:
    reader = PDUReader()
    items: list[PDU | PDataStarted | PDVFragment] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        reader.feed(stream[start:cut])
        items += drain(reader)
        start = cut
    assert reader.at_pdu_boundary
    return collapse(items)


@given(st.lists(pdus, min_size=1, max_size=5), st.data())
def test_any_split_points_give_the_same_items(values: list[PDU], data: st.DataObject) -> None:
    stream = b"".join(encode_pdu(v) for v in values)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert feed_in_pieces(stream, cuts) == expected_items(values)


@given(st.lists(pdus, min_size=1, max_size=3))
def test_one_byte_at_a_time(values: list[PDU]) -> None:
    stream = b"".join(encode_pdu(v) for v in values)
    assert feed_in_pieces(stream, list(range(len(stream)))) == expected_items(values)


def test_one_chunk_holding_many_pdus() -> None:
    values: list[PDU] = [
        VALUE_RQ,
        PDataTF((PresentationDataValue(1, 3, b"cmd!"), PresentationDataValue(1, 0, b""))),
        PDataTF((PresentationDataValue(1, 2, b"x" * 1000),)),
        ReleaseRQ(),
        Abort(0, 0),
    ]
    reader = PDUReader()
    reader.feed(b"".join(encode_pdu(v) for v in values))
    assert collapse(drain(reader)) == expected_items(values)
    assert reader.at_pdu_boundary


def test_pdv_data_is_a_view_of_the_fed_object() -> None:
    chunk = encode_pdata_header(10) + encode_pdv_header(5, False, True, 4) + b"abcd"
    reader = PDUReader()
    reader.feed(chunk)
    assert reader.next_item() == PDataStarted(10)
    fragment = reader.next_item()
    assert isinstance(fragment, PDVFragment)
    assert fragment.data.obj is chunk  # no copy was made
    assert (fragment.context_id, fragment.is_command, fragment.last_fragment) == (5, False, True)
    assert fragment.pdv_complete and fragment.ends_message_part
    assert bytes(fragment.data) == b"abcd"
    assert reader.next_item() is None


def test_large_pdv_comes_out_one_fragment_per_fed_chunk() -> None:
    size = 1 << 20
    payload = bytes(range(256)) * (size // 256)
    stream = encode_pdata_header(size + 6) + encode_pdv_header(1, False, True, size) + payload
    reader = PDUReader(max_pdu_length=size + 6)
    chunk = 65536
    calls = 0
    fragments: list[PDVFragment] = []
    for start in range(0, len(stream), chunk):
        reader.feed(memoryview(stream)[start : start + chunk])
        while (item := reader.next_item()) is not None:
            calls += 1
            if isinstance(item, PDVFragment):
                fragments.append(item)
        calls += 1  # the call that returned None
    chunks = -(-len(stream) // chunk)
    assert len(fragments) == chunks  # one piece per fed chunk, never per byte
    assert calls == 2 * chunks + 1  # + PDataStarted; one None per feed
    assert b"".join(f.data for f in fragments) == payload
    assert [f.pdv_complete for f in fragments].count(True) == 1


def test_empty_pdv_and_reserved_control_bits() -> None:
    stream = encode_pdata_header(6) + bytes.fromhex("0000000207ff")
    reader = PDUReader()
    reader.feed(stream)
    assert reader.next_item() == PDataStarted(6)
    fragment = reader.next_item()
    assert isinstance(fragment, PDVFragment)
    assert (fragment.context_id, fragment.is_command, fragment.last_fragment) == (7, True, True)
    assert fragment.pdv_complete and len(fragment.data) == 0
    assert reader.next_item() is None
    assert reader.at_pdu_boundary


def test_at_pdu_boundary_tracks_partial_pdus() -> None:
    reader = PDUReader()
    assert reader.at_pdu_boundary
    reader.feed(GOLDEN_RQ[:3])
    assert reader.next_item() is None
    assert not reader.at_pdu_boundary
    reader.feed(GOLDEN_RQ[3:100])
    assert reader.next_item() is None
    assert not reader.at_pdu_boundary
    reader.feed(GOLDEN_RQ[100:])
    assert reader.next_item() == VALUE_RQ
    assert reader.at_pdu_boundary
    reader.feed(encode_pdata_header(8) + encode_pdv_header(1, False, False, 2) + b"a")
    drain(reader)
    assert not reader.at_pdu_boundary  # one byte of the PDV still to come
    reader.feed(b"b")
    assert drain(reader)[-1].pdv_complete  # type: ignore[union-attr]
    assert reader.at_pdu_boundary


def test_feeding_bytearray_and_empty_chunks() -> None:
    reader = PDUReader()
    reader.feed(b"")
    reader.feed(bytearray(encode_pdu(ReleaseRQ())))
    reader.feed(memoryview(b""))
    assert reader.next_item() == ReleaseRQ()
    assert reader.next_item() is None


# --- Refusals ---------------------------------------------------------------------------------


def refused_after(reader: PDUReader, data: bytes) -> RemoteProtocolError:
    """Feed ``data`` one byte at a time; the error must come on its last byte, not before."""
    for index in range(len(data) - 1):
        reader.feed(data[index : index + 1])
        assert reader.next_item() is None
    reader.feed(data[-1:])
    with pytest.raises(RemoteProtocolError) as caught:
        reader.next_item()
    error = caught.value
    # The reader is dead from now on: the same error, every time.
    for call in (reader.next_item, lambda: reader.feed(b"\x05")):
        with pytest.raises(RemoteProtocolError) as again:
            call()
        assert again.value is error
    assert not reader.at_pdu_boundary
    return error


@pytest.mark.parametrize(
    "stream",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes.fromhex("16030100c4010000c00303"),  # TLS handshake record, ClientHello
        b"\x00\x00\x00\x00",
        b"\x08",
    ],
    ids=["http", "tls", "zero", "type8"],
)
def test_unknown_pdu_type_refused_on_the_first_byte(stream: bytes) -> None:
    reader = PDUReader()
    reader.feed(stream)  # all of it at once: still only the first byte is looked at
    with pytest.raises(RemoteProtocolError) as caught:
        reader.next_item()
    assert caught.value.abort_reason == AbortReason.UNRECOGNIZED_PDU
    assert refused_after(PDUReader(), stream[:1]).abort_reason == AbortReason.UNRECOGNIZED_PDU


def test_huge_associate_rq_refused_from_its_header_without_allocating() -> None:
    header = bytes.fromhex("0100fffffff0")  # an A-ASSOCIATE-RQ of ~4 GiB
    tracemalloc.start()
    try:
        error = refused_after(PDUReader(), header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.abort_reason == INVALID
    assert peak < 100_000


@pytest.mark.parametrize("pdu_type", [0x01, 0x02])
def test_associate_pdus_are_capped_by_max_pdu_length(pdu_type: int) -> None:
    at_cap = bytes((pdu_type, 0)) + (4096).to_bytes(4, "big")
    reader = PDUReader(max_pdu_length=4096)
    reader.feed(at_cap)
    assert reader.next_item() is None  # accepted: waiting for the body
    over_cap = bytes((pdu_type, 0)) + (4097).to_bytes(4, "big")
    assert refused_after(PDUReader(max_pdu_length=4096), over_cap).abort_reason == INVALID


def test_pdata_above_our_advertised_maximum_is_refused() -> None:
    reader = PDUReader()
    reader.max_pdata_length = 16384
    reader.feed(encode_pdata_header(16384))
    assert reader.next_item() == PDataStarted(16384)
    reader = PDUReader()
    reader.max_pdata_length = 16384
    assert refused_after(reader, encode_pdata_header(16385)).abort_reason == INVALID


def test_pdata_cap_is_max_pdu_length_until_a_maximum_is_set() -> None:
    reader = PDUReader(max_pdu_length=1000)
    assert reader.max_pdata_length is None
    assert refused_after(reader, encode_pdata_header(1001)).abort_reason == INVALID
    reader = PDUReader(max_pdu_length=1000)
    reader.max_pdata_length = 2000  # the association's own figure replaces the default
    reader.feed(encode_pdata_header(1500))
    assert reader.next_item() == PDataStarted(1500)


def test_max_lengths_must_be_positive() -> None:
    reader = PDUReader()
    for bad in (0, -1):
        with pytest.raises(ValueError):
            reader.max_pdata_length = bad
    reader.max_pdata_length = None
    with pytest.raises(ValueError):
        PDUReader(max_pdu_length=0)


@pytest.mark.parametrize("pdu_type", [0x03, 0x05, 0x06, 0x07])
@pytest.mark.parametrize("length", [0, 3, 5, 0xFFFFFFFF])
def test_fixed_length_pdus_refused_from_the_header(pdu_type: int, length: int) -> None:
    header = bytes((pdu_type, 0)) + length.to_bytes(4, "big")
    assert refused_after(PDUReader(), header).abort_reason == INVALID


@pytest.mark.parametrize(
    ("stream", "emitted_before_error"),
    [
        (encode_pdata_header(0), 0),  # no PDV at all
        (encode_pdata_header(5), 0),  # too short to hold one
        (encode_pdata_header(6) + bytes.fromhex("000000000100"), 1),  # Item-length 0
        (encode_pdata_header(6) + bytes.fromhex("000000010100"), 1),  # Item-length 1
        (encode_pdata_header(8) + bytes.fromhex("000000050100"), 1),  # past the PDU
        # a complete PDV, then 3 bytes: too few for another PDV header
        (encode_pdata_header(11) + encode_pdv_header(1, False, True, 2) + b"ab", 2),
    ],
    ids=["empty", "short", "length0", "length1", "beyond", "leftover"],
)
def test_malformed_pdata_is_refused_before_waiting(
    stream: bytes, emitted_before_error: int
) -> None:
    reader = PDUReader()
    reader.feed(stream)
    emitted = 0
    with pytest.raises(RemoteProtocolError) as caught:
        for _ in range(10):
            reader.next_item()
            emitted += 1
    assert emitted == emitted_before_error
    assert caught.value.abort_reason == INVALID


def test_body_errors_carry_the_codec_reason() -> None:
    data = bytearray(GOLDEN_RQ)
    data[6:8] = b"\x00\x00"  # protocol version without bit 0
    reader = PDUReader()
    reader.feed(bytes(data))
    with pytest.raises(RemoteProtocolError) as caught:
        reader.next_item()
    assert caught.value.reject is not None
    reader = PDUReader()
    reader.feed(bytes.fromhex("010000000010") + bytes(16))  # shorter than the fixed part
    with pytest.raises(RemoteProtocolError) as caught:
        reader.next_item()
    assert caught.value.abort_reason == INVALID

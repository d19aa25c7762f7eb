"""The header scanner against pydicom's corpus and hand-made edge cases."""

from __future__ import annotations

import random
import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from aiodicom.storage.header_scan import (
    MAX_NESTING_DEPTH,
    HeaderFields,
    HeaderScanError,
    HeaderScanner,
)
from support import pydicom_test_files

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def corpus_data_set(path: Path) -> tuple[pydicom.Dataset, bytes, str]:
    """pydicom's reading of a file, its data set bytes and their transfer syntax."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        with path.open("rb") as fp:
            read_preamble(fp, force=True)
            meta = _read_file_meta_info(fp)  # leaves fp at the first data set element
            offset = fp.tell()
    transfer_syntax = meta.get("TransferSyntaxUID")
    if transfer_syntax is None:  # no meta: the encoding pydicom detected
        implicit, little = ds.original_encoding
        transfer_syntax = IMPLICIT_LE if implicit else EXPLICIT_LE if little else EXPLICIT_BE
    return ds, path.read_bytes()[offset:], str(transfer_syntax)


def expected_fields(ds: pydicom.Dataset) -> HeaderFields:
    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return None if value is None else str(value).strip(" \x00")

    return HeaderFields(
        sop_class_uid=text("SOPClassUID"),
        sop_instance_uid=text("SOPInstanceUID"),
        patient_id=text("PatientID"),
        study_instance_uid=text("StudyInstanceUID"),
        series_instance_uid=text("SeriesInstanceUID"),
    )


def random_chunks(data: bytes, seed: int, max_size: int = 700) -> Iterator[memoryview]:
    rng = random.Random(seed)
    view = memoryview(data)
    position = 0
    while position < len(data):
        size = rng.randint(1, max_size)
        yield view[position : position + size]
        position += size


def scan(
    data: bytes, transfer_syntax: str, chunks: Iterator[memoryview] | None = None
) -> HeaderFields:
    scanner = HeaderScanner(transfer_syntax)
    for chunk in chunks if chunks is not None else [memoryview(data)]:
        scanner.feed(chunk)
    scanner.finish()
    assert scanner.done
    return scanner.result()


def encode(ds: Dataset, *, implicit_vr: bool = False, little_endian: bool = True) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = little_endian
    buffer.is_implicit_VR = implicit_vr
    write_dataset(buffer, ds)
    return buffer.getvalue()


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CORPUS = pydicom_test_files()


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) > 50


@pytest.mark.parametrize("path", CORPUS, ids=[path.name for path in CORPUS])
def test_corpus_file_in_random_chunks(path: Path) -> None:
    # Every bundled file is read by pydicom with force=True (none is skipped).
    ds, data, transfer_syntax = corpus_data_set(path)
    expected = expected_fields(ds)
    for seed in range(3):
        assert scan(data, transfer_syntax, random_chunks(data, seed)) == expected
    assert scan(data, transfer_syntax) == expected


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "image_dfl.dcm", "priv_SQ.dcm"])
def test_byte_at_a_time(name: str) -> None:
    ds, data, transfer_syntax = corpus_data_set(next(p for p in CORPUS if p.name == name))
    chunks = (memoryview(data)[index : index + 1] for index in range(len(data)))
    assert scan(data, transfer_syntax, chunks) == expected_fields(ds)


def test_stops_right_after_the_series_uid() -> None:
    ds = _named_data_set()
    ds.Rows = 4  # (0028,0010) after the series UID
    data = encode(ds)
    cut = data.index(b"1.2.3.4.5\x00") + 10  # the end of the Series Instance UID value
    scanner = HeaderScanner(EXPLICIT_LE)
    scanner.feed(memoryview(data[:cut]))
    assert scanner.done
    scanner.feed(memoryview(b"garbage that is never looked at"))
    scanner.finish()
    assert scanner.result().series_instance_uid == "1.2.3.4.5"


def _named_data_set() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.PatientID = "PID-7"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    return ds


def _nested(depth: int, width: int, rng: random.Random) -> Sequence:
    """Sequences nested ``depth`` deep, each length defined or undefined at random."""
    items = []
    for index in range(width):
        item = Dataset()
        item.is_undefined_length_sequence_item = rng.random() < 0.7
        item.add_new(0x00091010 if depth else 0x00100010, "LO" if depth else "PN", f"v{index}")
        if depth:
            item.add_new(0x00091011, "SQ", _nested(depth - 1, width, rng))
            item[0x00091011].is_undefined_length = rng.random() < 0.7
        items.append(item)
    return Sequence(items)


ENCODINGS = {
    "implicit LE": (IMPLICIT_LE, {"implicit_vr": True}),
    "explicit LE": (EXPLICIT_LE, {}),
    "explicit BE": (EXPLICIT_BE, {"little_endian": False}),
}


@settings(max_examples=60, deadline=None)
@given(
    encoding=st.sampled_from(sorted(ENCODINGS)),
    depth=st.integers(0, 6),
    width=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    deflated=st.booleans(),
)
def test_nested_undefined_length_sequences_are_skipped(
    encoding: str, depth: int, width: int, seed: int, deflated: bool
) -> None:
    transfer_syntax, options = ENCODINGS[encoding]
    if deflated and encoding != "explicit LE":
        return
    ds = _named_data_set()
    # (0008,1140) Referenced Image Sequence and a private sequence sit before the UIDs
    # we need; pydicom writes sequences and items with undefined length.
    rng = random.Random(seed)
    ds.ReferencedImageSequence = _nested(depth, width, rng)
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.add_new(0x00090010, "LO", "PRIVATE")
    ds.add_new(0x00091020, "SQ", _nested(depth, width, rng))
    ds[0x00091020].is_undefined_length = rng.random() < 0.5
    data = encode(ds, **options)
    assert b"\xff\xff\xff\xff" in data
    if deflated:
        data, transfer_syntax = deflate(data), DEFLATED
    fields = scan(data, transfer_syntax, random_chunks(data, seed, max_size=50))
    assert fields == HeaderFields(
        "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5.6", "PID-7", "1.2.3.4", "1.2.3.4.5"
    )


# -- hand-encoded elements ---------------------------------------------------------------


def explicit(
    tag: int, vr: bytes, value: bytes, *, big: bool = False, length: int | None = None
) -> bytes:
    order = ">" if big else "<"
    size = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack(f"{order}HH2s2xL", tag >> 16, tag & 0xFFFF, vr, size) + value
    return struct.pack(f"{order}HH2sH", tag >> 16, tag & 0xFFFF, vr, size) + value


def implicit(tag: int, value: bytes, *, length: int | None = None, big: bool = False) -> bytes:
    size = len(value) if length is None else length
    return struct.pack(">HHL" if big else "<HHL", tag >> 16, tag & 0xFFFF, size) + value


UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def uid_elements(*, big: bool = False) -> bytes:
    return b"".join(
        [
            explicit(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\x00", big=big),
            explicit(0x00080018, b"UI", b"1.2.3.4\x00", big=big),
        ]
    )


def tail_elements(*, big: bool = False) -> bytes:
    return b"".join(
        [
            explicit(0x00100020, b"LO", b"PID ", big=big),
            explicit(0x0020000D, b"UI", b"1.2.3\x00", big=big),
            explicit(0x0020000E, b"UI", b"1.2.3.4\x00", big=big),
        ]
    )


@pytest.mark.parametrize("big", [False, True], ids=["LE", "BE"])
def test_un_of_undefined_length_is_implicit_little_endian_inside(big: bool) -> None:
    # PS3.5 6.2.2: whatever the transfer syntax, its items stay implicit VR LE.
    inner_item = implicit(0x00091001, b"AB") + implicit(0x00091002, b"", length=UNDEFINED)
    inner_item += implicit(ITEM, b"", length=UNDEFINED) + implicit(0x00091003, b"xy")
    inner_item += implicit(ITEM_END, b"") + implicit(SEQUENCE_END, b"")
    un_value = implicit(ITEM, inner_item, length=UNDEFINED) + implicit(ITEM_END, b"")
    un_value += implicit(ITEM, b"\xff" * 6) + implicit(SEQUENCE_END, b"")
    data = uid_elements(big=big) + explicit(0x00091010, b"UN", un_value, big=big, length=UNDEFINED)
    data += tail_elements(big=big)
    fields = scan(data, EXPLICIT_BE if big else EXPLICIT_LE, random_chunks(data, 5, 9))
    assert fields == HeaderFields("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", "PID", "1.2.3", "1.2.3.4")


def test_encapsulated_fragments_are_never_looked_into() -> None:
    # An undefined-length OB inside an undefined-length item of a private sequence,
    # with a fragment whose bytes look like delimiters.
    fake_delimiters = implicit(SEQUENCE_END, b"") + implicit(ITEM_END, b"")
    fragments = implicit(ITEM, b"") + implicit(ITEM, fake_delimiters) + implicit(SEQUENCE_END, b"")
    item = explicit(0x00091011, b"OB", fragments, length=UNDEFINED)
    sequence = implicit(ITEM, item, length=UNDEFINED) + implicit(ITEM_END, b"")
    sequence += implicit(SEQUENCE_END, b"")
    data = uid_elements() + explicit(0x00091010, b"SQ", sequence, length=UNDEFINED)
    data += tail_elements()
    assert scan(data, EXPLICIT_LE).patient_id == "PID"


def _deep(depth: int) -> bytes:
    opening = explicit(0x00091010, b"SQ", b"", length=UNDEFINED) + implicit(
        ITEM, b"", length=UNDEFINED
    )
    closing = implicit(ITEM_END, b"") + implicit(SEQUENCE_END, b"")
    return uid_elements() + opening * depth + closing * depth + tail_elements()


def test_nesting_depth_is_bounded() -> None:
    # Each level is a sequence frame plus an item frame.
    assert scan(_deep(MAX_NESTING_DEPTH // 2), EXPLICIT_LE).series_instance_uid == "1.2.3.4"
    with pytest.raises(HeaderScanError, match="nested deeper"):
        scan(_deep(MAX_NESTING_DEPTH), EXPLICIT_LE)
    with pytest.raises(HeaderScanError):
        scan(_deep(100_000), EXPLICIT_LE)  # no recursion: a clean error, not a crash


@pytest.mark.parametrize(
    "data",
    [
        uid_elements()[:-3],  # truncated inside a value
        uid_elements() + b"\x10\x00",  # truncated inside a header
        uid_elements() + explicit(0x00091010, b"OB", b"", length=1000),  # length beyond data
        uid_elements() + explicit(0x00091010, b"SQ", b"", length=UNDEFINED),  # never closed
        uid_elements() + explicit(0x00091010, b"SQ", implicit(0x00100010, b""), length=UNDEFINED),
        uid_elements() + implicit(ITEM_END, b""),  # a delimiter at the top level: stops
        explicit(0x00080016, b"UI", b"x" * 2000),  # implausibly long wanted value
    ],
    ids=["value", "header", "beyond", "unclosed", "not-an-item", "delimiter", "long-uid"],
)
def test_malformed_headers_fail_cleanly(data: bytes) -> None:
    scanner = HeaderScanner(EXPLICIT_LE)
    try:
        scanner.feed(memoryview(data))
        scanner.finish()
    except HeaderScanError:
        return
    # The only tolerated outcome without an error: stopped without the UIDs.
    assert scanner.result().series_instance_uid is None
    assert data.endswith(implicit(ITEM_END, b""))


def test_corrupt_deflate_stream_fails_cleanly() -> None:
    with pytest.raises(HeaderScanError, match="deflated"):
        scan(b"\xff" * 64, DEFLATED)


def test_max_header_bytes_stops_the_scan_and_bounds_memory() -> None:
    big_private = explicit(0x00091010, b"OB", b"", length=20_000_000)
    head = explicit(0x00080016, b"UI", b"1.2\x00") + big_private
    tail = explicit(0x00080018, b"UI", b"1.2.3.4\x00") + tail_elements()
    zeros = memoryview(bytes(65536))

    def stream() -> Iterator[memoryview]:
        yield memoryview(head)
        remaining = 20_000_000
        while remaining:
            size = min(remaining, len(zeros))
            yield zeros[:size]
            remaining -= size
        yield memoryview(tail)

    tracemalloc.start()
    try:
        limited = HeaderScanner(EXPLICIT_LE, max_header_bytes=1_000_000)
        full = HeaderScanner(EXPLICIT_LE, max_header_bytes=30_000_000)
        for chunk in stream():
            limited.feed(chunk)
            full.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert limited.done and limited.limit_reached
    assert limited.result().sop_class_uid == "1.2"
    assert limited.result().sop_instance_uid is None
    assert full.done and not full.limit_reached
    assert full.result().sop_instance_uid == "1.2.3.4"
    assert peak < 1_000_000  # skipped values are never buffered


def test_deflate_is_inflated_only_as_far_as_needed() -> None:
    ds = _named_data_set()
    ds.add_new(0x7FE00010, "OB", bytes(50_000_000))  # 50 MB of zeros, ~50 KB deflated
    data = deflate(encode(ds))
    scanner = HeaderScanner(DEFLATED, max_header_bytes=100_000_000)
    tracemalloc.start()
    try:
        scanner.feed(memoryview(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scanner.done
    assert scanner.result().patient_id == "PID-7"
    assert peak < 1_000_000


@pytest.mark.parametrize(
    ("charset", "patient_id"),
    [
        ("ISO_IR 192", "M\u00fcller-\u4e2d"),
        ("ISO_IR 100", "M\u00fcller"),
        ("ISO_IR 144", "\u0418\u0432\u0430\u043d"),
        (["", "ISO 2022 IR 87"], "\u5c71\u7530"),
        (None, "plain"),
    ],
)
def test_patient_id_follows_the_specific_character_set(
    charset: str | list[str] | None, patient_id: str
) -> None:
    ds = _named_data_set()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.PatientID = patient_id
    data = encode(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reread = pydicom.dcmread(DicomBytesIO(data), force=True)
    assert scan(data, EXPLICIT_LE).patient_id == reread.PatientID == patient_id


def test_non_ascii_patient_id_without_character_set_is_latin1() -> None:
    data = uid_elements() + explicit(0x00100020, b"LO", b"M\xfcller") + tail_elements()[10:]
    assert scan(data, EXPLICIT_LE).patient_id == "M\u00fcller"


def test_implicit_data_set_announced_as_explicit_is_read() -> None:
    data = encode(_named_data_set(), implicit_vr=True)
    assert scan(data, EXPLICIT_LE).sop_instance_uid == "1.2.3.4.5.6"
    assert scan(data, "1.2.3.999.unknown").sop_instance_uid == "1.2.3.4.5.6"


def test_compressed_syntaxes_and_unknown_ones_are_explicit_le() -> None:
    data = encode(_named_data_set())
    for transfer_syntax in (JPEG_BASELINE, "1.2.840.10008.1.2.4.201", "1.2.3.999"):
        assert scan(data, transfer_syntax).study_instance_uid == "1.2.3.4"


def test_missing_values_are_none_and_empty_values_are_empty() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2"
    ds.PatientID = ""
    fields = scan(encode(ds), EXPLICIT_LE)
    assert fields == HeaderFields(None, "1.2", "", None, None)
    assert scan(b"", EXPLICIT_LE) == HeaderFields(None, None, None, None, None)

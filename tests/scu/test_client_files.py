"""The file side of the SCU without a network: reading file starts, planning contexts,
and the write buffers that carry a data set from disk."""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid
from scu_helpers import ODD_LENGTH, UNSENDABLE, corpus_files

from aiodicom.protocol.dimse import CStoreRQ, encode_command
from aiodicom.protocol.dimse_stream import encode_message, iter_message_pdus
from aiodicom.scu_files import (
    DicomFile,
    FileMessageReader,
    NotDicomFileError,
    TooManyContextsError,
    batch_files,
    contexts_for_datasets,
    contexts_for_files,
    encode_dataset,
    find_files,
    read_dicom_file,
    wire_length,
)
from support import pydicom_test_files, split_part10


def _pydicom_read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, stop_before_pixels=True)


def test_the_corpus_is_read_as_pydicom_reads_it() -> None:
    refused = {}
    for path in pydicom_test_files():
        try:
            dicom_file = read_dicom_file(path)
        except NotDicomFileError as error:
            refused[path.name] = error.reason
            continue
        dataset = _pydicom_read(path)
        data = path.read_bytes()
        assert data[dicom_file.dataset_offset :] == split_part10(data)[1], path.name
        assert dicom_file.dataset_length == len(data) - dicom_file.dataset_offset
        assert dicom_file.transfer_syntax_uid == dataset.file_meta.TransferSyntaxUID, path.name
        # The data set's own UIDs when it has them, the File Meta's otherwise.
        expected_class = dataset.get("SOPClassUID") or dataset.file_meta.MediaStorageSOPClassUID
        expected_instance = (
            dataset.get("SOPInstanceUID") or dataset.file_meta.MediaStorageSOPInstanceUID
        )
        assert dicom_file.sop_class_uid == expected_class, path.name
        assert dicom_file.sop_instance_uid == expected_instance, path.name
    assert set(refused) == set(UNSENDABLE)
    files = corpus_files()
    assert len(files) >= 70
    assert {f.path.name for f in files if f.dataset_length % 2} == ODD_LENGTH


def test_a_file_meta_longer_than_the_first_read(tmp_path: Path) -> None:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    # (0002,0102) Private Information, OB: 40 KB of File Meta before the data set.
    dataset.file_meta.PrivateInformationCreatorUID = "1.2.3"
    dataset.file_meta.PrivateInformation = b"\x01" * 40_000
    path = tmp_path / "long_meta.dcm"
    dataset.save_as(path, enforce_file_format=True)
    dicom_file = read_dicom_file(path)
    assert dicom_file.dataset_offset > 40_000
    assert dicom_file.sop_instance_uid == dataset.SOPInstanceUID
    assert path.read_bytes()[dicom_file.dataset_offset :] == split_part10(path.read_bytes())[1]


def test_non_dicom_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(NotDicomFileError, match="DICM"):
        read_dicom_file(text)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(NotDicomFileError):
        read_dicom_file(empty)


def test_find_files_walks_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    for name in ("a/1.dcm", "a/2.dcm", "a/deep/3.dcm"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_files([tmp_path / "a"])] == ["1.dcm", "2.dcm"]
    assert len(find_files([tmp_path / "a"], recursive=True)) == 3
    with pytest.raises(FileNotFoundError):
        find_files([tmp_path / "missing"])


def _fake(sop_class: str, syntax: str, name: str = "x.dcm") -> DicomFile:
    return DicomFile(Path(name), sop_class, generate_uid(), syntax, 132, 10)


def test_one_context_per_sop_class_and_transfer_syntax() -> None:
    files = [
        _fake("1.2.3", "1.2.840.10008.1.2.1"),
        _fake("1.2.3", "1.2.840.10008.1.2"),
        _fake("1.2.3", "1.2.840.10008.1.2.1"),
        _fake("1.2.4", "1.2.840.10008.1.2.4.50"),
    ]
    contexts = contexts_for_files(files)
    assert contexts == [
        ("1.2.3", ("1.2.840.10008.1.2.1",)),
        ("1.2.3", ("1.2.840.10008.1.2",)),
        ("1.2.4", ("1.2.840.10008.1.2.4.50",)),
    ]


def test_more_than_128_contexts_are_refused_then_batched() -> None:
    files = [_fake(f"1.2.3.{index % 130}", "1.2.840.10008.1.2.1") for index in range(300)]
    with pytest.raises(TooManyContextsError, match="130 presentation contexts"):
        contexts_for_files(files)
    batches = batch_files(files)
    assert [len(contexts_for_files(batch)) for batch in batches] == [128, 2]
    assert sorted(id(f) for batch in batches for f in batch) == sorted(id(f) for f in files)
    # Within a batch, files keep their order.
    for batch in batches:
        positions = [files.index(f) for f in batch]
        assert positions == sorted(positions)


def _wire(reader: FileMessageReader) -> bytes:
    parts = []
    while (buffer := reader.next_buffer()) is not None:
        parts.append(bytes(buffer))
    return b"".join(parts)


@pytest.mark.parametrize(
    ("dataset_length", "max_pdu", "chunk_size"),
    [
        (0, 16384, 1024 * 1024),
        (1, 16384, 1024 * 1024),
        (4303, 16384, 1024 * 1024),  # odd, like an unpadded deflated data set
        (4303, 16384, 4303),  # the pad byte alone in the last buffer
        (100_000, 16384, 1024 * 1024),
        (100_000, 16384, 5000),  # buffers smaller than a PDU
        (100_000, 0, 4096),  # no peer limit: 1 MiB PDUs split across buffers
        (3000, 64, 1000),  # a tiny peer limit: the command spans several PDUs
        (2_000_000, 1_048_576, 1024 * 1024),
    ],
)
def test_file_buffers_are_the_message_encode_message_builds(
    dataset_length: int, max_pdu: int, chunk_size: int
) -> None:
    data = bytes(index * 7 % 251 for index in range(dataset_length))
    command = CStoreRQ(message_id=7, affected_sop_class_uid="1.2.3", affected_sop_instance_uid="9")
    pdus = iter_message_pdus(3, encode_command(command), wire_length(dataset_length), max_pdu)
    file = io.BytesIO(b"HEAD" + data + b"TAIL")
    file.seek(4)
    reader = FileMessageReader(file, pdus, dataset_length, chunk_size=chunk_size)  # type: ignore[arg-type]
    # An odd data set goes out with one NUL after it (PS3.8 E.1: even fragments).
    padded = data + b"\x00" if dataset_length % 2 else data
    expected = encode_message(3, encode_command(command), padded, max_pdu)
    assert _wire(reader) == expected


def test_a_file_that_shrinks_while_sent_is_an_error() -> None:
    command = CStoreRQ(message_id=1, affected_sop_class_uid="1.2.3", affected_sop_instance_uid="9")
    pdus = iter_message_pdus(1, encode_command(command), wire_length(1000), 16384)
    reader = FileMessageReader(io.BytesIO(b"x" * 10), pdus, 1000)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="ended early"):
        _wire(reader)


def test_encode_dataset_in_each_uncompressed_syntax() -> None:
    source = pydicom.dcmread(next(p for p in pydicom_test_files() if p.name == "CT_small.dcm"))
    for syntax, implicit, little in (
        ("1.2.840.10008.1.2", True, True),
        ("1.2.840.10008.1.2.1", False, True),
        ("1.2.840.10008.1.2.2", False, False),
    ):
        encoded = encode_dataset(source, syntax)
        decoded = _decode(encoded, implicit, little)
        assert decoded.SOPInstanceUID == source.SOPInstanceUID
        assert decoded.PixelData == source.PixelData
        tags = list(decoded.keys())  # iterating a Dataset yields elements
        assert not any(tag.group == 2 for tag in tags)
    deflated = encode_dataset(source, "1.2.840.10008.1.2.1.99")
    assert len(deflated) % 2 == 0  # PS3.5 A.5: padded to even length
    inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
    assert inflater.decompress(deflated) == encode_dataset(source, "1.2.840.10008.1.2.1")
    assert inflater.eof


def _decode(encoded: bytes, implicit: bool, little: bool) -> Dataset:
    from pydicom.filereader import read_dataset

    return read_dataset(io.BytesIO(encoded), implicit, little)


def test_contexts_for_datasets() -> None:
    ct = pydicom.dcmread(next(p for p in pydicom_test_files() if p.name == "CT_small.dcm"))
    jpeg = pydicom.dcmread(next(p for p in pydicom_test_files() if p.name == "JPEG2000.dcm"))
    contexts = contexts_for_datasets([ct, jpeg, ct])
    assert contexts == [
        (ct.SOPClassUID, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")),
        (jpeg.SOPClassUID, (jpeg.file_meta.TransferSyntaxUID,)),
    ]

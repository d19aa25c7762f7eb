"""The streaming atomic writer: round trips, failures, duplicates, cleanup, memory bounds."""

from __future__ import annotations

import errno
import os
import random
import struct
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_dataset

from aiodicom.storage import (
    IMPLEMENTATION_CLASS_UID,
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATA_SET_MISMATCH,
    STATUS_DUPLICATE_SOP_INSTANCE,
    STATUS_MISSING_UID,
    STATUS_OUT_OF_RESOURCES,
    STATUS_UNSAFE_PATH,
    DuplicatePolicy,
    IncomingFile,
    StorageConfig,
    StorageSortKey,
    StorageWriter,
    StoreFailure,
)
from aiodicom.storage.writer import TEMP_DIR_NAME, _keepable
from support import pydicom_test_files

pytestmark = pytest.mark.anyio

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CORPUS = pydicom_test_files()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- helpers ------------------------------------------------------------------------------


def corpus_data_set(path: Path) -> tuple[pydicom.Dataset, bytes, str]:
    """pydicom's reading of a file, its data set bytes and their transfer syntax."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        with path.open("rb") as fp:
            read_preamble(fp, force=True)
            meta = _read_file_meta_info(fp)
            offset = fp.tell()
    transfer_syntax = meta.get("TransferSyntaxUID")
    if transfer_syntax is None:
        implicit, little = ds.original_encoding
        transfer_syntax = IMPLICIT_LE if implicit else EXPLICIT_LE if little else EXPLICIT_BE
    return ds, path.read_bytes()[offset:], str(transfer_syntax)


def data_set_bytes(**attributes: Any) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.PatientID = "PID-1"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in attributes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    ds.Rows = 2
    ds.Columns = 2
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hostile values are the point of some tests
        write_dataset(buffer, ds)
    return buffer.getvalue() + struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OB", 8) + bytes(8)


def random_chunks(data: bytes, seed: int, max_size: int = 4096) -> Iterator[memoryview]:
    rng = random.Random(seed)
    view = memoryview(data)
    position = 0
    while position < len(data):
        size = rng.randint(1, max_size)
        yield view[position : position + size]
        position += size


def split_stored(path: Path) -> tuple[bytes, bytes]:
    """(header, data set) of a stored file, cut by our (0002,0000) group length."""
    content = path.read_bytes()
    assert content[128:132] == b"DICM"
    assert content[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    (group_length,) = struct.unpack_from("<L", content, 140)
    return content[: 144 + group_length], content[144 + group_length :]


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if not path.is_dir())


async def store(
    writer: StorageWriter,
    data: bytes,
    *,
    sop_class_uid: str = SECONDARY_CAPTURE,
    sop_instance_uid: str = "1.2.3.4.5.6",
    transfer_syntax_uid: str = EXPLICIT_LE,
    seed: int = 0,
) -> Any:
    incoming = writer.begin(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        calling_ae_title="STORESCU",
    )
    for chunk in random_chunks(data, seed):
        await incoming.write(chunk)
    return await incoming.commit()


def writer_for(tmp_path: Path, **options: Any) -> StorageWriter:
    return StorageWriter(StorageConfig(data_dir=tmp_path / "data", **options))


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=[path.name for path in CORPUS])
@pytest.mark.parametrize("spill", [False, True], ids=["memory", "streamed"])
@pytest.mark.parametrize("threads", [False, True], ids=["loop", "threads"])
async def test_corpus_round_trip(tmp_path: Path, path: Path, spill: bool, threads: bool) -> None:
    ds, data, transfer_syntax = corpus_data_set(path)
    # spill: everything beyond 100 bytes goes through the temp file in 300-byte batches.
    options: dict[str, Any] = {"memory_buffer_limit": 100, "write_batch_size": 300} if spill else {}
    writer = writer_for(tmp_path, write_in_threads=threads, **options)
    sop_class = str(ds.get("SOPClassUID", "1.2.3"))
    sop_instance = str(ds.get("SOPInstanceUID", "1.2.3.4"))
    uids = [ds.get(name) for name in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")]
    try:
        stored = await store(
            writer,
            data,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax_uid=transfer_syntax,
            seed=len(data),
        )
    except StoreFailure as failure:
        # Only an instance that lacks a UID the PATIENT layout needs may fail.
        assert failure.status == STATUS_MISSING_UID, failure
        assert not all(uids) or "SOPClassUID" not in ds
        assert files_under(tmp_path / "data") == []
        return
    assert all(uids)
    relative = stored.path.relative_to((tmp_path / "data").resolve())
    assert relative.parts[1:] == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        f"{ds.SOPInstanceUID}.dcm",
    )
    header, stored_data = split_stored(stored.path)
    assert stored_data == data  # byte-identical, never re-encoded
    assert stored.size == len(header) + len(data) == stored.path.stat().st_size
    assert stored.transfer_syntax_uid == transfer_syntax
    assert not stored.replaced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reread = pydicom.dcmread(stored.path)
    meta = reread.file_meta
    assert meta.MediaStorageSOPClassUID == sop_class
    assert meta.MediaStorageSOPInstanceUID == sop_instance
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.SourceApplicationEntityTitle == "STORESCU"
    assert reread.SOPInstanceUID == ds.SOPInstanceUID
    assert files_under(tmp_path / "data" / TEMP_DIR_NAME) == []


@pytest.mark.parametrize("sort_by", list(StorageSortKey))
async def test_every_layout_on_disk(tmp_path: Path, sort_by: StorageSortKey) -> None:
    stored = await store(writer_for(tmp_path, sort_by=sort_by), data_set_bytes())
    expected = {
        StorageSortKey.PATIENT: "PID-1/1.2.3.4/1.2.3.4.5/1.2.3.4.5.6.dcm",
        StorageSortKey.STUDY: "1.2.3.4/1.2.3.4.5/1.2.3.4.5.6.dcm",
        StorageSortKey.SERIES: "1.2.3.4.5/1.2.3.4.5.6.dcm",
        StorageSortKey.IMAGE: "1.2.3.4.5.6.dcm",
    }[sort_by]
    assert stored.path == (tmp_path / "data").resolve() / expected
    assert stored.fields.patient_id == "PID-1"


@pytest.mark.parametrize("sort_by", list(StorageSortKey))
@pytest.mark.parametrize(
    "patient_id", ["../../escape", "/abs", "..", "a\\..\\b", "\u00e9\u4e2d", "x" * 64]
)
async def test_hostile_patient_ids_stay_inside(
    tmp_path: Path, sort_by: StorageSortKey, patient_id: str
) -> None:
    writer = writer_for(tmp_path, sort_by=sort_by)
    stored = await store(
        writer, data_set_bytes(PatientID=patient_id, SpecificCharacterSet="ISO_IR 192")
    )
    data_dir = (tmp_path / "data").resolve()
    assert stored.path.is_relative_to(data_dir)
    assert files_under(tmp_path) == [stored.path]


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
@pytest.mark.parametrize("hostile", ["../../1.2", "1.2/3", "1.2.3a", "9" * 65])
async def test_hostile_uids_are_rejected(tmp_path: Path, keyword: str, hostile: str) -> None:
    writer = writer_for(tmp_path)
    command_uid = hostile if keyword == "SOPInstanceUID" else "1.2.3.4.5.6"
    with pytest.raises(StoreFailure) as caught:
        await store(writer, data_set_bytes(**{keyword: hostile}), sop_instance_uid=command_uid)
    assert caught.value.status in (STATUS_UNSAFE_PATH, STATUS_CANNOT_UNDERSTAND)
    assert files_under(tmp_path) == []


async def test_a_symlink_out_of_data_dir_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PID-1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreFailure) as caught:
        await store(writer_for(tmp_path), data_set_bytes())
    assert caught.value.status == STATUS_UNSAFE_PATH
    assert files_under(outside) == []
    assert files_under(tmp_path / "data" / TEMP_DIR_NAME) == []


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "what"),
    [
        ({"sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"}, "SOP Class"),
        ({"sop_instance_uid": "9.9"}, "SOP Instance"),
    ],
)
@pytest.mark.parametrize("spill", [False, True])
async def test_uid_mismatch_is_a900(
    tmp_path: Path, command: dict[str, str], what: str, spill: bool
) -> None:
    writer = writer_for(tmp_path, memory_buffer_limit=0 if spill else 1 << 20)
    with pytest.raises(StoreFailure, match=what) as caught:
        await store(writer, data_set_bytes(), **command)
    assert caught.value.status == STATUS_DATA_SET_MISMATCH
    assert files_under(tmp_path) == []


async def test_a_doomed_store_stops_writing_but_keeps_accepting(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, memory_buffer_limit=0, write_batch_size=1000)
    incoming = writer.begin(
        sop_class_uid=SECONDARY_CAPTURE,
        sop_instance_uid="9.9",  # the data set says 1.2.3.4.5.6
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae_title="X",
    )
    await incoming.write(memoryview(data_set_bytes()))
    for _ in range(100):
        await incoming.write(memoryview(bytes(10_000)))
    assert incoming.received == len(data_set_bytes()) + 1_000_000
    assert files_under(tmp_path) == []  # nothing was written for the doomed store
    with pytest.raises(StoreFailure) as caught:
        await incoming.commit()
    assert caught.value.status == STATUS_DATA_SET_MISMATCH


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID"])
async def test_missing_uids_fail(tmp_path: Path, keyword: str) -> None:
    with pytest.raises(StoreFailure) as caught:
        await store(writer_for(tmp_path), data_set_bytes(**{keyword: None}))
    assert caught.value.status == STATUS_MISSING_UID
    assert files_under(tmp_path) == []


async def test_missing_study_uid_is_fine_for_the_series_layout(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, sort_by=StorageSortKey.SERIES)
    stored = await store(writer, data_set_bytes(StudyInstanceUID=None, PatientID=None))
    assert stored.path.name == "1.2.3.4.5.6.dcm"
    with pytest.raises(StoreFailure) as caught:
        await store(writer_for(tmp_path / "b"), data_set_bytes(StudyInstanceUID=None))
    assert caught.value.status == STATUS_MISSING_UID


@pytest.mark.parametrize(
    "data",
    [
        data_set_bytes()[:20],  # truncated inside the first value
        b"\x08\x00\x16\x00UI\x40\x00" + b"1" * 10,  # a length beyond the data
        struct.pack("<HH2s2xL", 0x0008, 0x0001, b"SQ", 0xFFFFFFFF) + b"\x01\x02" * 8,
    ],
    ids=["truncated", "beyond", "nonsense"],
)
async def test_undecodable_header_is_c000(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(StoreFailure) as caught:
        await store(writer_for(tmp_path), data)
    assert caught.value.status == STATUS_CANNOT_UNDERSTAND
    assert files_under(tmp_path) == []


async def test_abort_leaves_nothing_and_is_idempotent(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, memory_buffer_limit=100, write_batch_size=100)
    incoming = writer.begin(
        sop_class_uid=SECONDARY_CAPTURE,
        sop_instance_uid="1.2.3.4.5.6",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae_title="X",
    )
    await incoming.write(memoryview(data_set_bytes()))
    await incoming.write(memoryview(bytes(5000)))
    assert len(files_under(tmp_path / "data" / TEMP_DIR_NAME)) == 1  # spilled to disk
    await incoming.abort()
    await incoming.abort()
    assert files_under(tmp_path) == []
    with pytest.raises(RuntimeError):
        await incoming.write(memoryview(b"late"))
    with pytest.raises(RuntimeError):
        await incoming.commit()


async def test_abort_after_commit_keeps_the_file(tmp_path: Path) -> None:
    writer = writer_for(tmp_path)
    incoming = writer.begin(
        sop_class_uid=SECONDARY_CAPTURE,
        sop_instance_uid="1.2.3.4.5.6",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae_title="X",
    )
    await incoming.write(memoryview(data_set_bytes()))
    stored = await incoming.commit()
    await incoming.abort()
    assert stored.path.exists()


async def test_cancelled_while_streaming_then_abort_leaves_nothing(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, memory_buffer_limit=0, write_batch_size=1, write_in_threads=True)
    incoming = writer.begin(
        sop_class_uid=SECONDARY_CAPTURE,
        sop_instance_uid="1.2.3.4.5.6",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae_title="X",
    )
    with anyio.CancelScope() as scope:
        await incoming.write(memoryview(data_set_bytes()))
        scope.cancel()
        await incoming.write(memoryview(bytes(100)))  # cancelled at its thread hop
    await incoming.abort()
    assert files_under(tmp_path) == []


async def test_start_cleanup_removes_leftover_temp_files(tmp_path: Path) -> None:
    writer = writer_for(tmp_path)
    temp_dir = tmp_path / "data" / TEMP_DIR_NAME
    temp_dir.mkdir(parents=True)
    for index in range(3):
        (temp_dir / f"crash{index}.part").write_bytes(b"partial")
    (temp_dir / "unrelated.txt").write_bytes(b"kept")
    assert await writer.start_cleanup() == 3
    assert files_under(temp_dir) == [temp_dir / "unrelated.txt"]
    assert await writer.start_cleanup() == 0
    assert await writer_for(tmp_path / "fresh").start_cleanup() == 0  # creates the folders
    assert (tmp_path / "fresh" / "data" / TEMP_DIR_NAME).is_dir()


# -- duplicates ---------------------------------------------------------------------------


async def test_duplicates_replace(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = writer_for(tmp_path)
    first = await store(writer, data_set_bytes(PatientName="First"))
    with caplog.at_level("INFO", logger="aiodicom.storage"):
        second = await store(writer, data_set_bytes(PatientName="Second"))
    assert (first.replaced, second.replaced) == (False, True)
    assert pydicom.dcmread(second.path).PatientName == "Second"
    assert "replaced" in caplog.text
    assert files_under(tmp_path) == [second.path]


async def test_duplicates_keep_existing(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, duplicates=DuplicatePolicy.KEEP_EXISTING)
    first = await store(writer, data_set_bytes(PatientName="First"))
    second = await store(writer, data_set_bytes(PatientName="Second, longer"))
    assert second.kept_existing and not second.replaced and not first.kept_existing
    assert second.path == first.path
    assert second.size == first.size == first.path.stat().st_size
    assert pydicom.dcmread(second.path).PatientName == "First"
    assert files_under(tmp_path) == [first.path]


async def test_duplicates_reject(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, duplicates=DuplicatePolicy.REJECT)
    first = await store(writer, data_set_bytes(PatientName="First"))
    with pytest.raises(StoreFailure) as caught:
        await store(writer, data_set_bytes(PatientName="Second"))
    assert caught.value.status == STATUS_DUPLICATE_SOP_INSTANCE
    assert pydicom.dcmread(first.path).PatientName == "First"
    assert files_under(tmp_path) == [first.path]


# -- disk errors --------------------------------------------------------------------------


@pytest.mark.parametrize("spill", [False, True])
async def test_write_error_is_a700_without_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spill: bool
) -> None:
    calls = 0

    def disk_full(descriptor: int, buffers: Any) -> int:
        nonlocal calls
        calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    writer = writer_for(tmp_path, memory_buffer_limit=100 if spill else 1 << 20)
    with pytest.raises(StoreFailure) as caught:
        await store(writer, data_set_bytes() + bytes(3000))
    assert caught.value.status == STATUS_OUT_OF_RESOURCES
    assert calls == 1  # after the first failure nothing more is attempted
    assert files_under(tmp_path) == []


async def test_a_file_where_a_folder_should_be_is_a700(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PID-1").write_bytes(b"not a folder")
    with pytest.raises(StoreFailure) as caught:
        await store(writer_for(tmp_path), data_set_bytes())
    assert caught.value.status == STATUS_OUT_OF_RESOURCES
    assert files_under(tmp_path) == [tmp_path / "data" / "PID-1"]


async def test_fsync_syncs_the_file_and_the_new_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    stored = await store(writer_for(tmp_path, fsync=True), data_set_bytes())
    # The file, then the folders whose entries changed: data, PID-1, study, series.
    assert len(synced) == 5
    assert stored.path.exists()
    synced.clear()
    await store(writer_for(tmp_path, fsync=False), data_set_bytes())
    assert synced == []


async def test_thread_hops_per_data_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hops = 0
    real_run_sync = anyio.to_thread.run_sync

    async def counting_run_sync(function: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real_run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    # Up to inline_write_limit (1 MiB) and not durable: written by the loop itself.
    await store(writer_for(tmp_path / "a"), data_set_bytes() + bytes(500_000))
    await store(writer_for(tmp_path / "a2"), data_set_bytes())
    assert hops == 0
    # Over memory_buffer_limit: one hop per batch, then the commit.
    writer = writer_for(tmp_path / "b", memory_buffer_limit=0, write_batch_size=100_000)
    await store(writer, data_set_bytes() + bytes(500_000))
    assert 5 <= hops <= 12  # batches of >= 100 kB, then the commit
    # With fsync, or over inline_write_limit, a data set held in memory costs one hop.
    hops = 0
    await store(writer_for(tmp_path / "c", fsync=True), data_set_bytes())
    await store(writer_for(tmp_path / "d", inline_write_limit=0), data_set_bytes())
    assert hops == 2
    # write_in_threads=True: even a small one goes to a thread.
    hops = 0
    await store(writer_for(tmp_path / "e", write_in_threads=True), data_set_bytes())
    assert hops == 1
    # write_in_threads=False: nothing does, batches and fsync included.
    hops = 0
    in_loop = writer_for(tmp_path / "f", fsync=True, write_in_threads=False, memory_buffer_limit=0)
    await store(in_loop, data_set_bytes() + bytes(500_000))
    assert hops == 0


async def test_a_folder_removed_after_use_is_made_again(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, sort_by=StorageSortKey.SERIES)
    first = await store(
        writer, data_set_bytes(SOPInstanceUID="1.2.3.4.5.7"), sop_instance_uid="1.2.3.4.5.7"
    )
    # Someone tidies the storage tree (and its temporary folder) while the server runs.
    for path in files_under(tmp_path / "data"):
        path.unlink()
    first.path.parent.rmdir()
    (tmp_path / "data" / ".aiodicom-tmp").rmdir()
    second = await store(writer, data_set_bytes())
    assert second.path.parent == first.path.parent and second.path.is_file()


# -- memory -------------------------------------------------------------------------------


async def test_200_mb_streamed_in_64_kib_chunks_keeps_memory_bounded(tmp_path: Path) -> None:
    pixel_bytes = 200 * 1024 * 1024
    head = data_set_bytes()[:-16]  # without the small pixel data element
    head += struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OB", pixel_bytes)
    zeros = memoryview(bytes(64 * 1024))
    writer = writer_for(tmp_path)  # 1 MiB in memory, then batches of 4 MiB
    tracemalloc.start()
    try:
        incoming: IncomingFile = writer.begin(
            sop_class_uid=SECONDARY_CAPTURE,
            sop_instance_uid="1.2.3.4.5.6",
            transfer_syntax_uid=EXPLICIT_LE,
            calling_ae_title="BIG",
        )
        await incoming.write(memoryview(head))
        for _ in range(pixel_bytes // len(zeros)):
            await incoming.write(zeros)
        stored = await incoming.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak  # 4 MiB batch + copies in flight, not 200 MB
    size = stored.path.stat().st_size
    assert stored.size == size
    with stored.path.open("rb") as file:
        prefix = file.read(4096)
        file.seek(-4096, os.SEEK_END)
        suffix = file.read()
    assert prefix[128:132] == b"DICM"
    assert head in prefix
    assert size == prefix.index(head) + len(head) + pixel_bytes
    assert suffix == bytes(4096)
    reread = pydicom.dcmread(stored.path, stop_before_pixels=True)
    assert reread.SOPInstanceUID == "1.2.3.4.5.6"


async def test_views_of_reused_buffers_are_copied_and_bytes_views_kept(tmp_path: Path) -> None:
    data = data_set_bytes()
    incoming = writer_for(tmp_path).begin(
        sop_class_uid=SECONDARY_CAPTURE,
        sop_instance_uid="1.2.3.4.5.6",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae_title="STORESCU",
    )
    reused = bytearray(data)
    await incoming.write(memoryview(reused))
    reused[:] = bytes(len(reused))  # the caller reuses its buffer at once
    stored = await incoming.commit()
    assert split_stored(stored.path)[1] == data
    # Views of bytes cannot change: they are kept, not copied.
    immutable = memoryview(data)
    assert _keepable(immutable) is immutable
    assert _keepable(memoryview(bytearray(b"ab"))) == b"ab"

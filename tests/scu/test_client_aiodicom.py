"""The SCU against aiodicom's own SCP on loopback: pipelining, Datasets, errors, memory."""

from __future__ import annotations

import struct
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scu_helpers import (
    corpus_files,
    received_by_instance,
    rounds_by_instance,
    source_dataset,
)

from aiodicom import (
    AssociationRejectedError,
    NoPresentationContextError,
    SCPConfig,
    associate,
    contexts_for_datasets,
    contexts_for_files,
    read_dicom_file,
    store_files,
)
from aiodicom.scu_files import ProposedContext

sys.path.insert(0, str(Path(__file__).parent.parent / "scp"))
from scp_helpers import LOOPBACK, running_scp

pytestmark = pytest.mark.anyio

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _has_own_uids(path: Path) -> bool:
    dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    return "SOPClassUID" in dataset and "SOPInstanceUID" in dataset


async def test_echo(tmp_path: Path) -> None:
    async with running_scp(tmp_path) as scp:
        async with associate(LOOPBACK, scp.port, called_ae="AIODICOM") as peer:
            assert await peer.echo() == 0x0000
            assert await peer.echo() == 0x0000
        assert scp.stats.echoes == 2


@pytest.mark.parametrize("window", [8, 16])
async def test_pipelined_corpus_arrives_intact(tmp_path: Path, window: int) -> None:
    files = corpus_files()
    config = SCPConfig(max_operations_performed=16)
    # Files whose data set lacks its own SOP Class/Instance UID travel with the File
    # Meta's; our SCP checks the data set against the command and refuses them (0xC001).
    refused_by_policy = {f.path.name for f in files if not _has_own_uids(f.path)}
    assert refused_by_policy == {"UN_sequence.dcm", "no_meta_group_length.dcm", "priv_SQ.dcm"}
    for number, batch in enumerate(rounds_by_instance(files)):
        folder = tmp_path / f"round{number}"
        async with (
            running_scp(folder, sort_by="IMAGE", config=config) as scp,
            associate(
                LOOPBACK, scp.port, contexts=contexts_for_files(batch), window=window
            ) as peer,
        ):
            assert peer.window == window
            results = await peer.store_many(batch)
            # How full the window gets depends on how fast the SCP answers; that it
            # fills is shown deterministically by test_window_fills_while_the_scp_is_busy.
            assert 1 <= peer.peak_outstanding <= window
        received = received_by_instance(folder)
        for dicom_file, result in zip(batch, results, strict=True):
            assert result.path == dicom_file.path
            assert result.sop_instance_uid == dicom_file.sop_instance_uid
            if dicom_file.path.name in refused_by_policy:
                assert result.status == 0xC001, result
                continue
            assert result.ok, result
            assert received[dicom_file.sop_instance_uid] == source_dataset(dicom_file)


@pytest.mark.parametrize("window", [8, 16])
async def test_window_fills_while_the_scp_is_busy(tmp_path: Path, window: int) -> None:
    files = [f for f in corpus_files() if f.path.name == "CT_small.dcm"]
    release = anyio.Event()
    async with running_scp(tmp_path, config=SCPConfig(max_operations_performed=16)) as scp:
        # The SCP's first commit waits for `release`: the peer must keep sending.
        original_begin = scp.storage.begin
        held = []

        def begin(**options: Any) -> Any:
            incoming = original_begin(**options)
            if not held:
                original_commit = incoming.commit

                async def slow_commit() -> Any:
                    await release.wait()
                    return await original_commit()

                incoming.commit = slow_commit  # type: ignore[method-assign]
                held.append(incoming)
            return incoming

        scp.storage.begin = begin  # type: ignore[method-assign]
        async with associate(
            LOOPBACK, scp.port, contexts=contexts_for_files(files), window=window
        ) as peer:
            results: list[Any] = []

            async def send_all() -> None:
                results.extend(await peer.store_many(files * (window + 4)))

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(send_all)
                with anyio.fail_after(20):
                    await anyio.wait_all_tasks_blocked()
                # Everyone waits: the SCP on `release`, the peer on a full window.
                assert peer.peak_outstanding == window
                release.set()
        assert len(results) == window + 4 and all(result.ok for result in results)


async def test_window_one_never_pipelines(tmp_path: Path) -> None:
    files = [f for f in corpus_files() if f.path.name.startswith(("CT_small", "MR_small"))]
    async with (
        running_scp(tmp_path, sort_by="IMAGE") as scp,
        associate(LOOPBACK, scp.port, contexts=contexts_for_files(files), window=1) as peer,
    ):
        assert peer.window == 1
        results = await peer.store_many(files * 3)
        assert peer.peak_outstanding == 1
    assert all(result.ok for result in results)


def _dataset() -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = SECONDARY_CAPTURE
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.PatientID = "SCU-TEST"
    dataset.PatientName = "Test^Dataset"
    dataset.Modality = "OT"
    dataset.Rows = dataset.Columns = 8
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = bytes(range(64))
    return dataset


async def test_store_a_pydicom_dataset(tmp_path: Path) -> None:
    dataset = _dataset()
    async with (
        running_scp(tmp_path, sort_by="IMAGE") as scp,
        associate(LOOPBACK, scp.port, contexts=contexts_for_datasets([dataset])) as peer,
    ):
        result = await peer.store(dataset)
    assert result.ok and result.path is None
    stored = pydicom.dcmread(tmp_path / f"{dataset.SOPInstanceUID}.dcm")
    # Explicit VR Little Endian is proposed first and our SCP takes the requestor's order.
    assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert stored.PatientName == "Test^Dataset"
    assert stored.PixelData == dataset.PixelData


async def test_store_a_dataset_in_the_only_accepted_syntax(tmp_path: Path) -> None:
    dataset = _dataset()
    implicit_only = [ProposedContext(SECONDARY_CAPTURE, ("1.2.840.10008.1.2",))]
    async with (
        running_scp(tmp_path, sort_by="IMAGE") as scp,
        associate(LOOPBACK, scp.port, contexts=implicit_only) as peer,
    ):
        assert (await peer.store(dataset)).ok
    stored = pydicom.dcmread(tmp_path / f"{dataset.SOPInstanceUID}.dcm")
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert stored.PixelData == dataset.PixelData


async def test_no_context_fits(tmp_path: Path) -> None:
    ct = next(f for f in corpus_files() if f.path.name == "CT_small.dcm")
    mr = next(f for f in corpus_files() if f.path.name == "MR_small.dcm")
    async with (
        running_scp(tmp_path, sort_by="IMAGE") as scp,
        associate(LOOPBACK, scp.port, contexts=contexts_for_files([ct])) as peer,
    ):
        with pytest.raises(NoPresentationContextError) as caught:
            await peer.store(mr)
        message = str(caught.value)
        assert mr.sop_class_uid in message and "MR Image Storage" in message
        assert mr.transfer_syntax_uid in message
        # Verification was not proposed either.
        with pytest.raises(NoPresentationContextError):
            await peer.echo()
        # store_many reports it and goes on with the rest.
        results = await peer.store_many([mr, ct])
    assert results[0].status is None and "no accepted presentation context" in str(results[0].error)
    assert results[1].ok


async def test_rejection_carries_the_standard_codes(tmp_path: Path) -> None:
    config = SCPConfig(require_called_ae_title=True)
    async with running_scp(tmp_path, ae_title="RIGHT_AE", config=config) as scp:
        with pytest.raises(AssociationRejectedError) as caught:
            async with associate(LOOPBACK, scp.port, called_ae="WRONG_AE"):
                pytest.fail("the association should have been rejected")
        # PS3.8 Table 9-21: permanent, service-user, called-AE-title-not-recognized.
        assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 7)
        assert "called-AE-title-not-recognized" in str(caught.value)
        async with associate(LOOPBACK, scp.port, called_ae="RIGHT_AE") as peer:
            assert await peer.echo() == 0


def _write_sc(folder: Path, sop_class: str, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        dataset = _dataset()
        dataset.SOPClassUID = sop_class
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta.MediaStorageSOPClassUID = sop_class
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        path = folder / f"{sop_class}_{index}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


async def test_store_files_over_several_associations(tmp_path: Path) -> None:
    paths = _write_sc(tmp_path / "source", SECONDARY_CAPTURE, 30)
    (tmp_path / "source" / "notes.txt").write_text("not DICOM")
    seen = []
    async with running_scp(tmp_path / "stored", sort_by="IMAGE") as scp:
        results = await store_files(
            LOOPBACK, scp.port, [*paths, tmp_path / "source" / "notes.txt"],
            associations=3, on_result=seen.append,
        )  # fmt: skip
        assert scp.stats.associations == 3
        assert scp.stats.stored == 30
    assert [r.path for r in results[:30]] == paths
    assert all(r.ok for r in results[:30])
    assert results[30].status is None and "DICM" in str(results[30].error)
    assert len(seen) == 31


async def test_more_than_128_contexts_go_over_successive_associations(tmp_path: Path) -> None:
    # 130 (private) SOP classes: two associations, 128 then 2 contexts.
    paths = []
    for index in range(130):
        paths += _write_sc(tmp_path / "source", f"1.2.826.0.1.3680043.9.7433.{index}", 1)
    config = SCPConfig(accept_any_sop_class=True)
    async with running_scp(tmp_path / "stored", sort_by="IMAGE", config=config) as scp:
        results = await store_files(LOOPBACK, scp.port, paths)
        assert scp.stats.associations == 2
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]


async def test_unreachable_peer_gives_results_not_exceptions(tmp_path: Path) -> None:
    paths = _write_sc(tmp_path, SECONDARY_CAPTURE, 2)
    async with running_scp(tmp_path / "stored") as scp:
        port = scp.port
    # The SCP has stopped: nothing listens on its port now.
    results = await store_files(LOOPBACK, port, paths, connect_timeout=10)
    assert [r.status for r in results] == [None, None]
    assert all("cannot connect" in str(r.error) for r in results)


PIXEL_DATA_HEADER = struct.Struct("<HH2s2xL")
LARGE_SIZE = 300 * 1024 * 1024


def _write_large(path: Path, pixel_bytes: int) -> None:
    """A multi-frame image whose pixel data is written in chunks, never held in memory."""
    dataset = _dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte SC
    del dataset.PixelData
    dataset.Rows = dataset.Columns = 1024
    dataset.NumberOfFrames = pixel_bytes // (1024 * 1024)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(path, enforce_file_format=True)
    chunk = bytes(1024 * 1024)
    with path.open("ab") as file:
        file.write(PIXEL_DATA_HEADER.pack(0x7FE0, 0x0010, b"OB", pixel_bytes))
        for _ in range(pixel_bytes // len(chunk)):
            file.write(chunk)


async def test_a_300_mb_file_is_sent_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.dcm"
    _write_large(path, LARGE_SIZE)
    dicom_file = read_dicom_file(path)
    assert dicom_file.dataset_length > LARGE_SIZE
    async with (
        running_scp(tmp_path / "stored", sort_by="IMAGE") as scp,
        associate(LOOPBACK, scp.port, contexts=contexts_for_files([dicom_file])) as peer,
    ):
        # The receiving SCP runs in this process too; its own buffers are bounded
        # by the same 1 MiB order, so the peak stays far below the file size.
        tracemalloc.start()
        try:
            result = await peer.store(dicom_file)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.ok, result
    assert peak < 32 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 300 MB file"
    stored = tmp_path / "stored" / f"{dicom_file.sop_instance_uid}.dcm"
    assert stored.stat().st_size - (path.stat().st_size - dicom_file.dataset_length) > 0
    await anyio.to_thread.run_sync(_same_tail, path, stored, dicom_file.dataset_length)


def _same_tail(source: Path, stored: Path, length: int) -> None:
    """The last ``length`` bytes of both files are equal (compared 4 MiB at a time)."""
    with source.open("rb") as left, stored.open("rb") as right:
        left.seek(-length, 2)
        right.seek(-length, 2)
        while True:
            a = left.read(4 * 1024 * 1024)
            b = right.read(4 * 1024 * 1024)
            assert a == b
            if not a:
                return

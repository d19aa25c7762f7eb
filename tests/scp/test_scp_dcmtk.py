"""The SCP against DCMTK's echoscu and storescu (real peers, loopback only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pydicom
import pytest
from pydicom.dataset import Dataset

from scp_helpers import LOOPBACK, leftover_temporary_files, running_scp, stored_files
from support import need_executable, pydicom_test_files

pytestmark = pytest.mark.anyio

# Corpus files DCMTK's storescu refuses to send, whoever listens (the same against
# DCMTK's own storescp): storescu's own error for each is given.
STORESCU_CANNOT_SEND = {
    # storescu stops before sending: "missing SOP class (or instance) in file"
    "UN_sequence.dcm": "no SOP Class/Instance UID",
    "empty_charset_LEI.dcm": "no SOP Class/Instance UID",
    "meta_missing_tsyntax.dcm": "no SOP Class/Instance UID",
    "nested_priv_SQ.dcm": "no SOP Class/Instance UID",
    "no_meta_group_length.dcm": "no SOP Class/Instance UID",
    "priv_SQ.dcm": "no SOP Class/Instance UID",
    "rtdose_rle.dcm": "no SOP Class/Instance UID",
    "rtdose_rle_1frame.dcm": "no SOP Class/Instance UID",
    # DCMTK cannot parse these files at all
    "MR_truncated.dcm": "truncated Pixel Data",
    "rtplan_truncated.dcm": "truncated element",
    "SC_rgb_jpeg.dcm": "DCMTK reads a bogus 1.3 GB element length",
    "no_meta.dcm": "DCMTK reads a bogus 173 MB element length",
}


TRAILING_PADDING = 0xFFFCFFFC
PIXEL_DATA = 0x7FE00010


def _without_group_lengths(dataset: Dataset) -> Dataset:
    for element in list(dataset):
        if element.tag.element == 0 and element.tag.group != 0x0002:
            del dataset[element.tag]
    return dataset


async def _run(arguments: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(timeout):
        return await anyio.run_process(arguments, check=False)


@pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", ("asyncio", {"use_uvloop": True}), "trio"],
    ids=["asyncio", "uvloop", "trio"],
)
async def test_echoscu(tmp_path: Path) -> None:
    echoscu = need_executable("echoscu")
    async with running_scp(tmp_path) as scp:
        result = await _run([echoscu, "-to", "10", "-aec", "AIODICOM", LOOPBACK, str(scp.port)])
        assert result.returncode == 0, result.stderr.decode()
        assert scp.stats.echoes == 1


# storescu proposes uncompressed transfer syntaxes only, unless told which compressed
# one to add; the file then travels as it is, compressed.
STORESCU_PROPOSE_OPTION = {
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "-xx",  # JPEG Extended
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "-xu",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE Lossless
    "1.2.840.10008.1.2.1.99": "-xd",  # Deflated Explicit VR Little Endian
}


def _storescu_arguments(
    storescu: str, port: int, files: list[Path], transfer_syntax: str | None = None
) -> list[str]:
    arguments = [storescu, "-to", "20", "-R", "-aec", "AIODICOM"]
    if transfer_syntax in STORESCU_PROPOSE_OPTION:
        arguments.append(STORESCU_PROPOSE_OPTION[transfer_syntax])
    return [*arguments, LOOPBACK, str(port), *map(str, files)]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_storescu_sends_the_corpus(tmp_path: Path) -> None:
    storescu = need_executable("storescu")
    sources = [p for p in pydicom_test_files() if p.name not in STORESCU_CANNOT_SEND]
    assert len(sources) >= 60
    data_dir = tmp_path / "incoming"
    failures: list[tuple[str, str]] = []
    async with running_scp(data_dir, sort_by="IMAGE") as scp:
        for source in sources:
            original = pydicom.dcmread(source, force=True)
            syntax = original.file_meta.get("TransferSyntaxUID")
            result = await _run(_storescu_arguments(storescu, scp.port, [source], syntax))
            if result.returncode != 0:
                failures.append((source.name, result.stderr.decode()[-300:]))
                continue
            # Several corpus files share a SOP Instance UID: check each as it arrives.
            path = data_dir / f"{original.SOPInstanceUID}.dcm"
            received = pydicom.dcmread(path)
            difference = _difference(original, received)
            if difference:
                failures.append((source.name, difference))
            # storescu may convert between uncompressed syntaxes (it prefers explicit VR
            # LE); a compressed file must arrive in its own syntax, never decompressed.
            if syntax in STORESCU_PROPOSE_OPTION:
                assert received.file_meta.TransferSyntaxUID == syntax, source.name
            assert received.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
            assert received.file_meta.SourceApplicationEntityTitle == "STORESCU"
        assert scp.stats.stored == len(sources)
    assert not failures, failures
    assert not leftover_temporary_files(data_dir)


def _difference(original: Dataset, received: Dataset) -> str:
    """Where the received data set differs from the source, beyond DCMTK's re-encoding.

    storescu parses the file and writes the data set again, so two changes are its own,
    both allowed: it drops Data Set Trailing Padding (FFFC,FFFC) (PS3.10 7.2), and it
    gives encapsulated Pixel Data the VR OB that PS3.5 A.4 prescribes where the file
    said OW. Group lengths are dropped too. Everything else must be equal.
    """
    for dataset in (original, received):
        _without_group_lengths(dataset)
        if TRAILING_PADDING in dataset:
            del dataset[TRAILING_PADDING]
    original_tags = {element.tag for element in original}
    received_tags = {element.tag for element in received}
    if original_tags != received_tags:
        return f"tags differ: {sorted(original_tags ^ received_tags)}"
    for element in original:
        other = received[element.tag]
        if element.value != other.value:
            return f"{element.tag} value differs"
        if element.VR != other.VR and element.tag != PIXEL_DATA:
            return f"{element.tag} VR {element.VR} became {other.VR}"
    return ""


@pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", ("asyncio", {"use_uvloop": True}), "trio"],
    ids=["asyncio", "uvloop", "trio"],
)
async def test_concurrent_storescu_associations(tmp_path: Path) -> None:
    storescu = need_executable("storescu")
    source = next(p for p in pydicom_test_files() if p.name == "CT_small.dcm")
    copies = []
    for index in range(12):
        dataset = pydicom.dcmread(source)
        dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.10.9999.{index + 1}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        path = tmp_path / f"copy{index}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        copies.append(path)
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir) as scp:
        results: list[int] = []

        async def send(group: list[Path]) -> None:
            result = await _run(_storescu_arguments(storescu, scp.port, group))
            results.append(result.returncode)

        async with anyio.create_task_group() as task_group:
            for start in range(0, len(copies), 2):
                task_group.start_soon(send, copies[start : start + 2])
        assert results == [0] * 6
        assert scp.stats.associations == 6
    assert len(stored_files(data_dir)) == 12

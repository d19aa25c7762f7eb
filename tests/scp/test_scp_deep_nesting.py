"""Data sets that make pydicom give up: the store is clean and the callback failure is contained."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from aiodicom import associate, contexts_for_files
from aiodicom.storage import encode_file_meta
from scp_helpers import LOOPBACK, running_scp, stored_files

pytestmark = pytest.mark.anyio

# pydicom reads nested sequences recursively and fails near depth 249 (ANCHORS.md).
DEPTH = 400
UNDEFINED = 0xFFFFFFFF


def _deeply_nested_file(folder: Path) -> Path:
    dataset = Dataset()
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.10.777.1"
    dataset.PatientID = "DEEP"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.10.777.2"
    dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.10.777.3"
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    # (0040,0275) Request Attributes Sequence, nested DEPTH times, undefined lengths
    # (PS3.5 7.5: item FFFE,E000; item delimiter FFFE,E00D; sequence delimiter FFFE,E0DD).
    opening = struct.pack("<HH2sHL", 0x0040, 0x0275, b"SQ", 0, UNDEFINED) + struct.pack(
        "<HHL", 0xFFFE, 0xE000, UNDEFINED
    )
    closing = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    body = buffer.getvalue() + opening * DEPTH + closing * DEPTH
    path = folder / "deep.dcm"
    path.write_bytes(
        encode_file_meta(
            sop_class_uid=dataset.SOPClassUID,
            sop_instance_uid=dataset.SOPInstanceUID,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
        + body
    )
    return path


async def test_deep_nesting_stores_and_the_callback_failure_is_contained(tmp_path: Path) -> None:
    source = _deeply_nested_file(tmp_path)
    with pytest.raises(RecursionError):  # the premise: pydicom cannot read it
        pydicom.dcmread(source)
    seen: list[object] = []
    async with running_scp(tmp_path / "data", callbacks=[seen.append]) as scp:
        contexts = contexts_for_files([source])
        async with associate(LOOPBACK, scp.port, contexts=contexts) as peer:
            result = await peer.store(source)
            assert result.status == 0x0000  # the path needs only the first elements
    # Shutdown waited for the callback work: it could not get a Dataset, was logged
    # and counted, and the server went on serving.
    assert seen == []
    assert scp.callback_failures == 1
    [stored] = stored_files(tmp_path / "data")
    assert stored.read_bytes().endswith(source.read_bytes()[-64:])

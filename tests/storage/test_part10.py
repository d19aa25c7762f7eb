"""The Part 10 header we write is read back by pydicom and accepted by DCMTK's dcmdump."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from aiodicom.storage.part10 import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    encode_file_meta,
)
from support import need_executable

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _data_set_bytes(sop_instance_uid: str, *, implicit_vr: bool) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ds.PatientID = "PID1"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = implicit_vr
    write_dataset(buffer, ds)
    return buffer.getvalue()


def _group_elements(header: bytes) -> list[tuple[int, bytes, bytes]]:
    """Walk our explicit VR LE group 0002 by hand: (element, vr, value)."""
    position = 132
    elements = []
    while position < len(header):
        group, element, vr = struct.unpack_from("<HH2s", header, position)
        assert group == 0x0002
        if vr == b"OB":
            (length,) = struct.unpack_from("<L", header, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", header, position + 6)
            start = position + 8
        elements.append((element, vr, header[start : start + length]))
        position = start + length
    assert position == len(header)
    return elements


@pytest.mark.parametrize("sop_instance_uid", ["1.2.3.4.5.6", "1.2.3.4.5.67"])  # even, odd
@pytest.mark.parametrize("ae_title", [None, "STORESCU", "ODD_AE", "  PADDED "])
@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_pydicom_reads_the_header(
    tmp_path: Path, sop_instance_uid: str, ae_title: str | None, transfer_syntax: str
) -> None:
    header = encode_file_meta(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax,
        source_ae_title=ae_title,
    )
    assert header[:128] == bytes(128)
    assert header[128:132] == b"DICM"
    elements = _group_elements(header)
    assert [element for element, _, _ in elements][:6] == [0, 1, 2, 3, 0x10, 0x12]
    # PS3.10 Table 7.1-1: the group length counts every byte after its own element.
    assert elements[0] == (0, b"UL", struct.pack("<L", len(header) - 132 - 12))
    assert all(len(value) % 2 == 0 for _, _, value in elements)

    path = tmp_path / "x.dcm"
    implicit = transfer_syntax == ImplicitVRLittleEndian
    path.write_bytes(header + _data_set_bytes(sop_instance_uid, implicit_vr=implicit))
    ds = pydicom.dcmread(path)
    meta = ds.file_meta
    assert meta.FileMetaInformationGroupLength == len(header) - 144
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
    assert meta.MediaStorageSOPInstanceUID == sop_instance_uid
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    if ae_title is None:
        assert "SourceApplicationEntityTitle" not in meta
    else:
        assert meta.SourceApplicationEntityTitle == ae_title.strip()
    assert ds.SOPInstanceUID == sop_instance_uid
    assert ds.PatientID == "PID1"


@pytest.mark.peer
@pytest.mark.parametrize("ae_title", [None, "ODD_AE"])
def test_dcmdump_accepts_the_header(tmp_path: Path, ae_title: str | None) -> None:
    dcmdump = need_executable("dcmdump")
    uid = "1.2.3.4.5.67"
    path = tmp_path / "x.dcm"
    header = encode_file_meta(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=uid,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        source_ae_title=ae_title,
    )
    path.write_bytes(header + _data_set_bytes(uid, implicit_vr=False))
    completed = subprocess.run(
        [dcmdump, "-M", "+L", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout + completed.stderr
    assert not re.search(r"^[EWF]: ", output, re.MULTILINE), output
    assert "(0002,0000) UL" in output
    assert f"[{IMPLEMENTATION_CLASS_UID}]" in output
    assert f"[{uid}]" in output
    assert ("ODD_AE" in output) == (ae_title is not None)


def test_implementation_identity_is_valid() -> None:
    # PS3.5 9.1: digits and dots, no leading zero in a component, at most 64 bytes;
    # B.2: the 2.25 root is followed by one UUID as an integer below 2**128.
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", IMPLEMENTATION_CLASS_UID)
    assert len(IMPLEMENTATION_CLASS_UID) <= 64
    assert int(IMPLEMENTATION_CLASS_UID.split(".")[2]) < 2**128
    assert 1 <= len(IMPLEMENTATION_VERSION_NAME) <= 16


@pytest.mark.parametrize(
    "overrides",
    [
        {"sop_instance_uid": ""},
        {"sop_instance_uid": "1." * 40},
        {"sop_class_uid": "1.2.\u00e9"},
        {"source_ae_title": "A" * 17},
        {"implementation_version_name": "X" * 17},
    ],
)
def test_values_that_cannot_be_encoded_are_refused(overrides: dict[str, str]) -> None:
    arguments = {
        "sop_class_uid": CT_IMAGE_STORAGE,
        "sop_instance_uid": "1.2.3",
        "transfer_syntax_uid": ExplicitVRLittleEndian,
        "source_ae_title": "AE",
    }
    arguments.update(overrides)
    with pytest.raises(ValueError):
        encode_file_meta(**arguments)  # type: ignore[arg-type]

"""Helpers shared by the tests: real peers and the pydicom corpus.

A test that needs a peer (a DCMTK tool, pynetdicom) calls one of the ``need_*``
functions. Without the peer the test is skipped with the reason; with
``AIODICOM_REQUIRE_PEERS=1`` in the environment (CI sets it) a missing peer fails the
test instead, so that CI can never pass by skipping the interoperability proof.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REQUIRE_PEERS = os.environ.get("AIODICOM_REQUIRE_PEERS") == "1"


def _missing(reason: str) -> None:
    if REQUIRE_PEERS:
        pytest.fail(f"{reason} (AIODICOM_REQUIRE_PEERS=1 forbids skipping)")
    pytest.skip(reason)


def need_executable(name: str) -> str:
    """The full path of a peer program such as DCMTK's ``storescu``."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (apt-get install -y dcmtk)")
        raise AssertionError("unreachable")
    return path


def need_module(name: str) -> ModuleType:
    """A peer library such as ``pynetdicom``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python package {name} is not installed (pip install -e '.[test]')")
        raise AssertionError("unreachable") from None


def pydicom_test_files() -> list[Path]:
    """pydicom's bundled DICOM test files (listed directly: no download is attempted)."""
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm" and p.is_file())


def split_part10(data: bytes) -> tuple[bytes, bytes]:
    """Split a DICOM Part 10 file into (preamble + DICM + meta group, data set bytes).

    The File Meta group is always explicit VR little endian (PS3.10 7.1); its elements
    are walked one by one, so a missing or wrong (0002,0000) group length does not
    matter. A file without a preamble returns (b"", data).
    """
    if data[128:132] != b"DICM":
        return b"", data
    offset = 132
    while offset + 8 <= len(data):
        group = int.from_bytes(data[offset : offset + 2], "little")
        if group != 0x0002:
            break
        vr = data[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
            offset += 12 + length
        else:
            length = int.from_bytes(data[offset + 6 : offset + 8], "little")
            offset += 8 + length
    return data[:offset], data[offset:]


def part10_dataset_bytes(path: Path) -> bytes:
    """The data set bytes of a Part 10 file (everything after the File Meta group)."""
    return split_part10(path.read_bytes())[1]

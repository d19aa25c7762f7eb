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

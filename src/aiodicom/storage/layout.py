"""Where a received instance goes on disk, and why it can never escape ``data_dir``.

Every path component comes from the peer's data set, so each is checked or rewritten
here before it touches the filesystem (sans-IO, except the single ``resolve()`` in
:func:`final_path`).

Decisions, documented once:

* **UIDs are rejected, not rewritten.** A UID may only hold digits and dots
  (PS3.5 9.1) and at most 64 characters; anything else raises
  :class:`UnsafePathComponent` (the writer answers a 0xC000-range failure). Rewriting a
  UID would silently store two instances under one name. Components with leading zeros
  (``1.02``), invalid per PS3.5 9.1 but harmless on disk, are accepted.
* **Patient IDs are mapped, not rejected** (any LO is a legal Patient ID). Characters
  outside ``[A-Za-z0-9._-]`` (``/``, ``\\``, NUL, controls, spaces, non-ASCII...) become
  ``_`` and leading dots are removed, so the result is never ``.``, ``..`` or hidden.
  When the mapping changed anything, ``_`` plus 12 hex digits of the SHA-256 of the
  original value is appended so that distinct IDs (``A/B`` and ``A B``) never share a
  folder. The result is at most 64 characters (LO's maximum, PS3.5 Table 6.2-1).
* A missing or empty Patient ID with the PATIENT layout is stored under
  ``UNKNOWN`` (a real Patient ID ``UNKNOWN`` shares that folder).
"""

from __future__ import annotations

import hashlib
import os
import re
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Final, Literal

from .header_scan import HeaderFields

__all__ = [
    "MISSING_PATIENT_ID",
    "StorageSortKey",
    "UnsafePathComponent",
    "final_path",
    "relative_path",
    "safe_component",
]

MISSING_PATIENT_ID: Final = "UNKNOWN"
FILE_SUFFIX: Final = ".dcm"

_UID_MAX: Final = 64  # PS3.5 Table 6.2-1 (UI)
_PATIENT_ID_MAX: Final = 64  # PS3.5 Table 6.2-1 (LO)
_HASH_HEX_DIGITS: Final = 12
_UID_PATTERN: Final = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UNSAFE_CHARACTERS: Final = re.compile(r"[^A-Za-z0-9._-]")


class StorageSortKey(str, Enum):
    """How stored files are arranged under the data directory (pacsanini-compatible)."""

    PATIENT = "PATIENT"  # PatientID/StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm
    STUDY = "STUDY"  # StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm
    SERIES = "SERIES"  # SeriesInstanceUID/SOPInstanceUID.dcm
    IMAGE = "IMAGE"  # SOPInstanceUID.dcm


class UnsafePathComponent(ValueError):
    """A value from the data set cannot be used as (part of) a file path."""


def safe_component(value: str | None, *, kind: Literal["uid", "patient_id"]) -> str:
    """The path component for ``value``, or :class:`UnsafePathComponent`.

    ``kind="uid"``: the stripped UID itself if it is a well-formed UID, else rejected
    (``None`` and empty included). ``kind="patient_id"``: always a safe component.
    """
    if kind == "uid":
        return _uid_component(value)
    if kind == "patient_id":
        return _patient_id_component(value)
    raise ValueError(f"unknown component kind {kind!r}")


def _uid_component(value: str | None) -> str:
    if value is None:
        raise UnsafePathComponent("a UID needed for the file path is missing")
    uid = value.strip("\x00 ")
    if len(uid) > _UID_MAX or _UID_PATTERN.fullmatch(uid) is None:
        raise UnsafePathComponent(f"not a valid UID for a path: {value[:80]!r}")
    return uid


def _patient_id_component(value: str | None) -> str:
    if value is None:
        return MISSING_PATIENT_ID
    stripped = value.strip(" ")
    if not stripped:
        return MISSING_PATIENT_ID
    mapped = _UNSAFE_CHARACTERS.sub("_", stripped).lstrip(".")
    if mapped == stripped and len(mapped) <= _PATIENT_ID_MAX:
        return mapped
    digest = hashlib.sha256(stripped.encode("utf-8", "surrogatepass")).hexdigest()
    suffix = "_" + digest[:_HASH_HEX_DIGITS]
    # The suffix is never empty, so the component can never be "", "." or "..".
    return mapped[: _PATIENT_ID_MAX - len(suffix)] + suffix


def relative_parts(fields: HeaderFields, sort_by: StorageSortKey) -> tuple[str, ...]:
    """The components of the file's path relative to the data directory (folders, then
    the file name) for the chosen layout; each one checked by the rules above."""
    file_name = _uid_component(fields.sop_instance_uid) + FILE_SUFFIX
    if sort_by is StorageSortKey.IMAGE:
        return (file_name,)
    series = _uid_component(fields.series_instance_uid)
    if sort_by is StorageSortKey.SERIES:
        return (series, file_name)
    study = _uid_component(fields.study_instance_uid)
    if sort_by is StorageSortKey.STUDY:
        return (study, series, file_name)
    if sort_by is StorageSortKey.PATIENT:
        patient = _patient_id_component(fields.patient_id)
        return (patient, study, series, file_name)
    raise ValueError(f"unknown sort key {sort_by!r}")


def relative_path(fields: HeaderFields, sort_by: StorageSortKey) -> PurePosixPath:
    """The file's path relative to the data directory for the chosen layout."""
    return PurePosixPath(*relative_parts(fields, sort_by))


def final_path(data_dir: Path, relative: PurePosixPath) -> Path:
    """``data_dir / relative`` after proving it stays inside ``data_dir``.

    Symlinks are resolved in the data directory and in every parent folder of the file;
    if the resolved folder is not inside the resolved data directory (a symlink pointing
    out, or ``..`` in a hand-made ``relative``) :class:`UnsafePathComponent` is raised.
    The file name itself is not resolved: an atomic rename replaces a symlink at that
    name rather than writing through it. The returned path is the resolved one, so the
    caller writes exactly where the check looked.
    """
    if relative.is_absolute() or not relative.parts:
        raise UnsafePathComponent(f"not a relative file path: {str(relative)!r}")
    if any(part in ("", ".", "..") or "\x00" in part or "\\" in part for part in relative.parts):
        raise UnsafePathComponent(f"unsafe path component in {str(relative)!r}")
    root = Path(os.path.realpath(data_dir))
    parent = Path(os.path.realpath(root.joinpath(*relative.parts[:-1])))
    if parent != root and not parent.is_relative_to(root):
        raise UnsafePathComponent(f"{str(relative)!r} resolves outside the data directory")
    return parent / relative.name

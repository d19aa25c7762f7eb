"""Did every sent file arrive intact? Part 10 splitting and the received-directory check.

A received file is matched to the sent one by the Media Storage SOP Instance UID in its
File Meta group (0002,0003): every receiver writes one (DCMTK, aiodicom, pynetdicom and
Orthanc alike), whatever its file naming. The data-set bytes after the File Meta group
are then compared through their SHA-256, read in chunks so a 96 MB file is never held
twice in memory.

Receivers that keep the bytes as sent (aiodicom, DCMTK ``+B``, pynetdicom's
``encoded_dataset()``) must match byte for byte. Receivers that decode and re-encode
(DCMTK's default, Orthanc) may legitimately differ in encoding details, so for them a
byte difference falls back to comparing the two data sets decoded by pydicom.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

PREAMBLE_LENGTH = 128  # PS3.10 7.1: 128-byte preamble, then "DICM"
_PREFIX = b"DICM"
_META_GROUP = 0x0002
# PS3.5 Table 7.1-1: the explicit VR encodings with a 2-byte reserved field and a
# 4-byte length; every other VR has a 2-byte length.
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x0003  # (0002,0003)
_TRANSFER_SYNTAX_UID = 0x0010  # (0002,0010)
_HEAD_READ = 64 * 1024
_HASH_CHUNK = 1 << 20
# How many mismatches a report lists by UID (the counts are always complete).
_LISTED = 10


class NotPart10(ValueError):
    """The file has no ``DICM`` prefix after a 128-byte preamble."""


@dataclass(frozen=True)
class Part10Head:
    """Where the data set starts, and the File Meta values the check needs."""

    dataset_offset: int
    sop_instance_uid: str
    transfer_syntax_uid: str


def _text(raw: bytes) -> str:
    # PS3.5 6.2: UI values are padded with NUL, text values with spaces.
    return raw.rstrip(b"\x00 ").decode("ascii", "replace")


def parse_head(head: bytes) -> Part10Head:
    """Walk the File Meta group (always explicit VR little endian, PS3.10 7.1).

    Elements are walked one by one rather than trusting (0002,0000) Group Length, so a
    missing or wrong group length does not move the split point. ``head`` must hold
    the whole meta group (the first 64 KiB of a file always does in practice).
    """
    if head[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] != _PREFIX:
        raise NotPart10("no DICM prefix after the preamble")
    offset = PREAMBLE_LENGTH + 4
    values: dict[int, bytes] = {}
    while offset + 8 <= len(head):
        group = int.from_bytes(head[offset : offset + 2], "little")
        if group != _META_GROUP:
            break
        element = int.from_bytes(head[offset + 2 : offset + 4], "little")
        vr = head[offset + 4 : offset + 6]
        if vr in _LONG_LENGTH_VRS:
            length = int.from_bytes(head[offset + 8 : offset + 12], "little")
            start = offset + 12
        else:
            length = int.from_bytes(head[offset + 6 : offset + 8], "little")
            start = offset + 8
        values[element] = head[start : start + length]
        offset = start + length
    if offset > len(head):
        raise NotPart10("File Meta group longer than the bytes read")
    return Part10Head(
        dataset_offset=offset,
        sop_instance_uid=_text(values.get(_MEDIA_STORAGE_SOP_INSTANCE_UID, b"")),
        transfer_syntax_uid=_text(values.get(_TRANSFER_SYNTAX_UID, b"")),
    )


def split_part10(data: bytes) -> tuple[bytes, bytes]:
    """Split a whole Part 10 file into (preamble + prefix + File Meta, data set bytes)."""
    offset = parse_head(data).dataset_offset
    return data[:offset], data[offset:]


def _hash_from(handle: BinaryIO, offset: int) -> str:
    digest = hashlib.sha256()
    handle.seek(offset)
    while chunk := handle.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetDigest:
    """One Part 10 file summarised: its UID, sizes and the data set's SHA-256."""

    path: Path
    sop_instance_uid: str
    transfer_syntax_uid: str
    file_size: int
    dataset_offset: int
    dataset_sha256: str


def digest_file(path: Path) -> DatasetDigest:
    """Read one Part 10 file in chunks: File Meta values and the data set's SHA-256."""
    with path.open("rb") as handle:
        head = parse_head(handle.read(_HEAD_READ))
        size = os.fstat(handle.fileno()).st_size
        return DatasetDigest(
            path=path,
            sop_instance_uid=head.sop_instance_uid,
            transfer_syntax_uid=head.transfer_syntax_uid,
            file_size=size,
            dataset_offset=head.dataset_offset,
            dataset_sha256=_hash_from(handle, head.dataset_offset),
        )


def _files_under(folder: Path) -> Iterable[Path]:
    for directory, _subdirectories, names in os.walk(folder):
        for name in names:
            yield Path(directory, name)


def _decoded_equal(sent: Path, received: Path) -> bool:
    import pydicom

    # File Meta is read into .file_meta and not compared: only the data sets are.
    return bool(pydicom.dcmread(sent) == pydicom.dcmread(received))


@dataclass
class IntegrityReport:
    """What the received directory held compared with what was sent."""

    expected: int
    identical: int = 0
    decoded_equal: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    not_dicom: list[str] = field(default_factory=list)

    @property
    def received(self) -> int:
        return self.identical + self.decoded_equal + len(self.mismatched)

    @property
    def ok(self) -> bool:
        return (
            self.identical + self.decoded_equal == self.expected
            and not (self.missing or self.mismatched or self.duplicates or self.unexpected)
            and not self.not_dicom
        )

    def summary(self) -> str:
        if self.ok and not self.decoded_equal:
            return f"ok: {self.identical}/{self.expected} byte-identical"
        if self.ok:
            return (
                f"ok: {self.identical} byte-identical + {self.decoded_equal} equal once "
                f"decoded, of {self.expected}"
            )
        parts = [f"FAILED: {self.identical + self.decoded_equal}/{self.expected} intact"]
        for label, uids in (
            ("missing", self.missing),
            ("corrupted", self.mismatched),
            ("duplicated", self.duplicates),
            ("not sent", self.unexpected),
            ("not DICOM", self.not_dicom),
        ):
            if uids:
                listed = ", ".join(uids[:_LISTED]) + (" ..." if len(uids) > _LISTED else "")
                parts.append(f"{len(uids)} {label} ({listed})")
        return "; ".join(parts)


def check_received(
    sent: Sequence[DatasetDigest],
    received_dir: Path,
    *,
    require_identical: bool,
    ignore_non_dicom: bool = False,
) -> IntegrityReport:
    """Compare every file under ``received_dir`` with the ``sent`` files, by UID.

    ``require_identical``: the data-set bytes must match exactly (for receivers that
    promise bit preservation); otherwise a byte difference is checked again on the
    decoded data sets. ``ignore_non_dicom`` skips files that are not Part 10 (a
    receiver's own bookkeeping), which otherwise fail the check.
    """
    by_uid = {item.sop_instance_uid: item for item in sent}
    report = IntegrityReport(expected=len(by_uid))
    seen: set[str] = set()
    for path in sorted(_files_under(received_dir)):
        try:
            got = digest_file(path)
        except NotPart10:
            if not ignore_non_dicom:
                report.not_dicom.append(str(path.relative_to(received_dir)))
            continue
        uid = got.sop_instance_uid
        original = by_uid.get(uid)
        if original is None:
            report.unexpected.append(uid or str(path.relative_to(received_dir)))
            continue
        if uid in seen:
            report.duplicates.append(uid)
            continue
        seen.add(uid)
        if got.dataset_sha256 == original.dataset_sha256:
            report.identical += 1
        elif not require_identical and _decoded_equal(original.path, path):
            report.decoded_equal += 1
        else:
            report.mismatched.append(uid)
    report.missing = sorted(set(by_uid) - seen)
    return report

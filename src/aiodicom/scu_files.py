"""The file side of the Storage SCU: what a DICOM file is, which contexts it needs, and
how its data set goes on the wire without being copied or held in memory.

* :func:`read_dicom_file` reads only the start of a file: the File Meta group (PS3.10
  7.1, always Explicit VR Little Endian) for the transfer syntax, then the first elements
  of the data set (through :class:`~aiodicom.storage.HeaderScanner`) for the SOP Class
  and Instance UIDs. The data set is everything after the File Meta group and is later
  sent byte for byte: no decoding, no transcoding.
* :func:`contexts_for_files` proposes one presentation context per (SOP class, transfer
  syntax) pair, each with that single transfer syntax: a file can only travel in its own
  syntax, so a context that lists several could be accepted with the wrong one.
  :func:`batch_files` groups files so that no association needs more than the 128
  contexts PS3.8 9.3.2.2 allows (odd IDs 1-255).
* :class:`FileMessageReader` turns the ``(header, data_length)`` pairs of
  :meth:`Association.stream_message` into write buffers of at most ``chunk_size`` bytes:
  each header is put in place and the file is read straight into the buffer behind it
  (``readinto``), so the data set bytes are copied once, by the kernel.

Decisions: the data set's own SOP Class/Instance UIDs are used (the C-STORE-RQ's Affected
SOP Class/Instance UIDs name the instance sent, PS3.7 9.1.1.1); when the data set lacks
them, the File Meta's Media Storage SOP Class/Instance UIDs stand in. A file without File
Meta, without a transfer syntax, or with neither source of UIDs is not sent
(:class:`NotDicomFileError`): guessing its encoding would be silent transcoding.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from .protocol.dimse import status_category
from .protocol.negotiation import MAX_PRESENTATION_CONTEXTS
from .protocol.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from .storage.header_scan import HeaderScanner

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "UNCOMPRESSED_SYNTAXES",
    "AssociationAbortedError",
    "AssociationRejectedError",
    "ClientError",
    "DicomFile",
    "FileMessageReader",
    "NoPresentationContextError",
    "NotDicomFileError",
    "ProposedContext",
    "StoreItem",
    "StoreResult",
    "TooManyContextsError",
    "batch_files",
    "batch_positions",
    "contexts_for_datasets",
    "contexts_for_files",
    "encode_dataset",
    "find_files",
    "plan_jobs",
    "read_dicom_file",
    "unsent_result",
    "wire_length",
]

# Write buffers of 1 MiB: few enough system calls and thread hops per gigabyte, small
# enough that memory stays bounded whatever the file size.
DEFAULT_CHUNK_SIZE = 1024 * 1024
# How much of a file the first read takes: the File Meta group and the first elements of
# nearly every data set (SOP Class/Instance UID sit at (0008,0016)/(0008,0018)).
_FIRST_READ = 16 * 1024
# The most of a file read to find the UIDs; past it the File Meta values are used.
_MAX_HEADER_READ = 1024 * 1024

# PS3.10 7.1: 128-byte preamble, "DICM", then the group 0002 elements.
_PREFIX_OFFSET = 128
_PREFIX = b"DICM"
_META_START = 132
_MEDIA_STORAGE_SOP_CLASS_UID = 0x0002
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x0003
_TRANSFER_SYNTAX_UID = 0x0010
# PS3.5 7.1.2 Table 7.1-1: explicit VRs whose length is 4 bytes after 2 reserved ones.
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_META_ELEMENT = struct.Struct("<HH2sH")
_U32 = struct.Struct("<L")
# The syntaxes a pydicom Dataset can be encoded in by us (PS3.5 A.1, A.2, A.3, A.5); any
# other one is a compressed pixel data encoding that only the data's own syntax carries.
UNCOMPRESSED_SYNTAXES = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)


class ClientError(Exception):
    """Base class of the SCU's errors."""


class NotDicomFileError(ValueError):
    """A path that cannot be sent as it is: not a DICOM Part 10 file, or one without
    the transfer syntax or SOP Class/Instance UID a C-STORE needs."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


class TooManyContextsError(ValueError):
    """The files need more presentation contexts than one association can carry."""

    def __init__(self, needed: int) -> None:
        super().__init__(
            f"the files need {needed} presentation contexts (SOP class x transfer syntax); "
            f"one association carries at most {MAX_PRESENTATION_CONTEXTS} (PS3.8 9.3.2.2): "
            "send them in batches (batch_files) or over several associations"
        )
        self.needed = needed


class ProposedContext(NamedTuple):
    """A presentation context to propose: an abstract syntax and its transfer syntaxes."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DicomFile:
    """A DICOM Part 10 file ready to send: where its data set is and what it is."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int
    dataset_length: int


StoreItem = DicomFile | Dataset | str | os.PathLike[str]
"""What ``store`` accepts: a path, a file already read, or a pydicom Dataset."""


# --- Reading the start of a file -------------------------------------------------------------


def read_dicom_file(path: str | os.PathLike[str]) -> DicomFile:
    """Read what sending ``path`` needs from its first bytes (usually one 16 KiB read).

    Raises :class:`NotDicomFileError` for a file that cannot be sent as it is, and
    ``OSError`` when it cannot be read.
    """
    path = Path(path)
    with open(path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        head = _read_up_to(file, _FIRST_READ)
        if len(head) < _META_START or head[_PREFIX_OFFSET:_META_START] != _PREFIX:
            raise NotDicomFileError(path, "no DICOM File Meta Information ('DICM' prefix)")
        meta = _walk_file_meta(head)
        while meta is None and len(head) < min(size, _MAX_HEADER_READ):
            # A File Meta group larger than the first read (long private values): rare.
            more = _read_up_to(file, _FIRST_READ)
            if not more:
                break
            head += more
            meta = _walk_file_meta(head)
        if meta is None:
            raise NotDicomFileError(path, "the File Meta group runs past the file's start")
        dataset_offset, values = meta
        transfer_syntax = _meta_uid(values.get(_TRANSFER_SYNTAX_UID))
        if not transfer_syntax:
            raise NotDicomFileError(path, "no Transfer Syntax UID (0002,0010) in File Meta")

        scanner = HeaderScanner(transfer_syntax, max_header_bytes=_MAX_HEADER_READ)
        scanner.feed(memoryview(head)[dataset_offset:])
        read = len(head)
        fields = scanner.result()
        while (
            not (fields.sop_class_uid and fields.sop_instance_uid)
            and not scanner.done
            and read < min(size, _MAX_HEADER_READ)
        ):
            more = _read_up_to(file, _FIRST_READ)
            if not more:
                break
            read += len(more)
            scanner.feed(more)
            fields = scanner.result()
    sop_class = fields.sop_class_uid or _meta_uid(values.get(_MEDIA_STORAGE_SOP_CLASS_UID))
    sop_instance = fields.sop_instance_uid or _meta_uid(values.get(_MEDIA_STORAGE_SOP_INSTANCE_UID))
    if not sop_class or not sop_instance:
        raise NotDicomFileError(path, "no SOP Class/Instance UID in the data set or File Meta")
    return DicomFile(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax_uid=transfer_syntax,
        dataset_offset=dataset_offset,
        dataset_length=size - dataset_offset,
    )


def _read_up_to(file: BinaryIO, count: int) -> bytes:
    parts: list[bytes] = []
    remaining = count
    while remaining > 0:
        part = file.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _walk_file_meta(head: bytes) -> tuple[int, dict[int, bytes]] | None:
    """(offset of the data set, {element: value}) or None when ``head`` ends too early.

    The group is walked element by element, so a missing or wrong (0002,0000) group
    length does not matter. A meta group written implicit VR (a known writer bug) is
    recognised by its "VR" not being two upper-case letters.
    """
    values: dict[int, bytes] = {}
    offset = _META_START
    end = len(head)
    while True:
        if offset + 8 > end:
            return None
        group, element, vr, short_length = _META_ELEMENT.unpack_from(head, offset)
        if group != 0x0002:
            return offset, values
        if not (vr.isalpha() and vr.isupper()):
            # Implicit VR: a 4-byte length follows the tag.
            length = _U32.unpack_from(head, offset + 4)[0]
            value_start = offset + 8
        elif vr in _LONG_LENGTH_VRS:
            if offset + 12 > end:
                return None
            length = _U32.unpack_from(head, offset + 8)[0]
            value_start = offset + 12
        else:
            length = short_length
            value_start = offset + 8
        if length == 0xFFFFFFFF:
            return None  # an undefined length has no place in File Meta
        if value_start + length > end:
            return None
        if element in (
            _MEDIA_STORAGE_SOP_CLASS_UID,
            _MEDIA_STORAGE_SOP_INSTANCE_UID,
            _TRANSFER_SYNTAX_UID,
        ):
            values[element] = head[value_start : value_start + length]
        offset = value_start + length


def _meta_uid(raw: bytes | None) -> str:
    # PS3.5 9.1: a UID is padded with one trailing NUL; tolerate spaces as well.
    if not raw:
        return ""
    return raw.rstrip(b"\x00 ").decode("ascii", "replace")


def find_files(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = False) -> list[Path]:
    """The files named by ``paths``; a directory gives its files (all levels when
    ``recursive``), sorted by name. Missing paths raise ``FileNotFoundError``."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.iterdir()
            found.extend(sorted(p for p in walker if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


# --- Presentation contexts ---------------------------------------------------------------------


def _as_dicom_files(files: Iterable[DicomFile | str | os.PathLike[str]]) -> list[DicomFile]:
    return [item if isinstance(item, DicomFile) else read_dicom_file(item) for item in files]


def contexts_for_files(
    files: Iterable[DicomFile | str | os.PathLike[str]],
    *,
    max_contexts: int = MAX_PRESENTATION_CONTEXTS,
) -> list[ProposedContext]:
    """One context per (SOP class, transfer syntax) the files need, in first-seen order.

    Paths are read with :func:`read_dicom_file` (which raises for a file that cannot be
    sent). Raises :class:`TooManyContextsError` beyond ``max_contexts``.
    """
    pairs = dict.fromkeys(
        (dicom_file.sop_class_uid, dicom_file.transfer_syntax_uid)
        for dicom_file in _as_dicom_files(files)
    )
    if len(pairs) > max_contexts:
        raise TooManyContextsError(len(pairs))
    return [ProposedContext(sop_class, (syntax,)) for sop_class, syntax in pairs]


def batch_files(
    files: Sequence[DicomFile], *, max_contexts: int = MAX_PRESENTATION_CONTEXTS
) -> list[list[DicomFile]]:
    """Split ``files`` into batches that each need at most ``max_contexts`` contexts.

    Files are grouped by (SOP class, transfer syntax); the groups fill batches in
    first-seen order; within a batch files keep their order. One batch when they fit.
    """
    return [
        [files[position] for position in batch] for batch in batch_positions(files, max_contexts)
    ]


def batch_positions(files: Sequence[DicomFile], max_contexts: int) -> list[list[int]]:
    """:func:`batch_files` as positions in ``files``."""
    if max_contexts < 1:
        raise ValueError("max_contexts must be at least 1")
    batch_of_pair: dict[tuple[str, str], int] = {}
    pairs_per_batch: list[int] = []
    batches: list[list[int]] = []
    for position, dicom_file in enumerate(files):
        pair = (dicom_file.sop_class_uid, dicom_file.transfer_syntax_uid)
        index = batch_of_pair.get(pair)
        if index is None:
            if not pairs_per_batch or pairs_per_batch[-1] >= max_contexts:
                pairs_per_batch.append(0)
                batches.append([])
            index = len(batches) - 1
            batch_of_pair[pair] = index
            pairs_per_batch[index] += 1
        batches[index].append(position)
    return batches


# --- Sending a data set from disk ----------------------------------------------------------------


def wire_length(dataset_length: int) -> int:
    """The data set's length on the wire: odd lengths get one trailing NUL.

    PS3.8 Annex E.1 wants even fragments (DCMTK aborts on an odd one) and PS3.5 A.5 pads
    an odd deflated stream with one trailing NUL byte. Only a deflated data set written
    without that pad, or a damaged (truncated) file, has an odd length; the pad is the
    only change ever made to a file's bytes, and a reader ignores it (PS3.5 A.5 Note 4).
    """
    return dataset_length + (dataset_length & 1)


class FileMessageReader:
    """Write buffers for one message whose data set is read from an open file.

    ``pdus`` are the ``(header, data_length)`` pairs of ``Association.stream_message``
    for :func:`wire_length` data set bytes; the file is positioned at the data set's
    first byte and holds ``dataset_length`` of them. :meth:`next_buffer` returns the next
    bytes to write (at most about ``chunk_size``; a new buffer each time, never reused, so
    a transport may keep a reference to it), or None when the message is complete. A PDU
    larger than ``chunk_size`` is split across buffers.
    """

    def __init__(
        self,
        file: io.RawIOBase,
        pdus: Iterator[tuple[bytes, int]],
        dataset_length: int,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self._file = file
        self._pdus = pdus
        self._file_remaining = dataset_length
        self._data_remaining = wire_length(dataset_length)
        self._chunk_size = chunk_size
        self._header: bytes | None = None  # the next PDU header not yet placed
        self._pdu_data_remaining = 0  # bytes of the current PDU's data still to read
        self._finished = False

    def next_buffer(self) -> memoryview | None:
        if self._finished:
            return None
        # Headers are small: leave room for a few alongside the data.
        capacity = min(self._chunk_size, self._data_remaining + 4096)
        # Zero-filled: the pad byte of an odd data set is already in place.
        buffer = bytearray(capacity)
        view = memoryview(buffer)
        used = 0
        while True:
            if self._pdu_data_remaining == 0:
                if self._header is None:
                    next_pdu = next(self._pdus, None)
                    if next_pdu is None:
                        self._finished = True
                        break
                    self._header, self._pdu_data_remaining = next_pdu
                header = self._header
                if used + len(header) > capacity:
                    if used == 0:
                        # Only a header larger than the buffer (a tiny peer Maximum
                        # Length with a long command set): it goes out on its own.
                        self._header = None
                        return memoryview(header)
                    break  # the next buffer starts with it
                view[used : used + len(header)] = header
                used += len(header)
                self._header = None
                continue
            room = capacity - used
            if room == 0:
                break
            take = min(room, self._pdu_data_remaining)
            from_file = min(take, self._file_remaining)
            self._read_into(view[used : used + from_file])
            self._file_remaining -= from_file
            used += take
            self._pdu_data_remaining -= take
            self._data_remaining -= take
        if used == 0:
            return None
        return view[:used]

    def _read_into(self, target: memoryview) -> None:
        filled = 0
        while filled < len(target):
            count = self._file.readinto(target[filled:])
            if not count:
                raise OSError(
                    f"{getattr(self._file, 'name', 'file')}: ended early (the file changed "
                    "size while being sent)"
                )
            filled += count


# --- Errors and results ----------------------------------------------------------------------


class NoPresentationContextError(ClientError, LookupError):
    """No accepted presentation context can carry this SOP class in this syntax."""

    def __init__(self, sop_class_uid: str, transfer_syntax_uid: str | None) -> None:
        name = UID(sop_class_uid).name
        syntax = (
            f"transfer syntax {transfer_syntax_uid} ({UID(transfer_syntax_uid).name})"
            if transfer_syntax_uid
            else "any transfer syntax"
        )
        super().__init__(
            f"no accepted presentation context for SOP class {sop_class_uid} ({name}) with {syntax}"
        )
        self.sop_class_uid = sop_class_uid
        self.transfer_syntax_uid = transfer_syntax_uid


class AssociationRejectedError(ClientError):
    """The peer answered A-ASSOCIATE-RJ; the fields are PS3.8 Table 9-21's."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        super().__init__(
            f"association rejected: result {result} ({_REJECT_RESULTS.get(result, '?')}), "
            f"source {source} ({_REJECT_SOURCES.get(source, '?')}), reason {reason} "
            f"({_REJECT_REASONS.get((source, reason), '?')})"
        )
        self.result = result
        self.source = source
        self.reason = reason


class AssociationAbortedError(ClientError):
    """The association ended abnormally: an A-ABORT (PS3.8 Table 9-26 source/reason),
    from the peer or from our side because the peer broke the protocol, or the
    transport connection closed under it (A-P-ABORT, ``local`` true)."""

    def __init__(self, source: int, reason: int, *, local: bool = False, detail: str = "") -> None:
        who = "by us" if local else "by the peer"
        super().__init__(
            f"association aborted {who}: source {source}, reason {reason}"
            + (f": {detail}" if detail else "")
        )
        self.source = source
        self.reason = reason
        self.local = local
        self.detail = detail


_REJECT_RESULTS = {1: "permanent", 2: "transient"}
_REJECT_SOURCES = {
    1: "service-user",
    2: "service-provider ACSE",
    3: "service-provider presentation",
}
_REJECT_REASONS = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-AE-title-not-recognized",
    (1, 7): "called-AE-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The outcome of one C-STORE.

    ``status`` is the peer's Status (PS3.7 Annex C, PS3.4 Table B.2-1), or None when the
    request got no response (``error`` says why: no context fits, not a DICOM file, the
    association failed). ``error_comment`` is the peer's Error Comment (0000,0902).
    ``path`` is None for a Dataset; ``size`` is the data set's length in bytes.
    """

    path: Path | None
    sop_class_uid: str
    sop_instance_uid: str
    status: int | None
    error_comment: str | None = None
    error: str | None = None
    size: int = 0

    @property
    def ok(self) -> bool:
        """Stored: success or warning (PS3.4 B.2.3: a warning still means stored)."""
        return self.status is not None and status_category(self.status) in ("success", "warning")


def unsent_result(item: StoreItem, error: Exception) -> StoreResult:
    if isinstance(item, Dataset):
        sop_class = str(item.get("SOPClassUID", "") or "")
        sop_instance = str(item.get("SOPInstanceUID", "") or "")
        return StoreResult(None, sop_class, sop_instance, None, error=str(error))
    if isinstance(item, DicomFile):
        return StoreResult(
            item.path,
            item.sop_class_uid,
            item.sop_instance_uid,
            None,
            error=str(error),
            size=item.dataset_length,
        )
    return StoreResult(Path(item), "", "", None, error=str(error))


# --- Encoding a pydicom Dataset -------------------------------------------------------------


def encode_dataset(dataset: Dataset, transfer_syntax_uid: str) -> bytes:
    """The data set bytes of ``dataset`` in ``transfer_syntax_uid`` (PS3.5 Annex A).

    Group 0002 belongs to the file, not the data set, and is left out. Deflated
    Explicit VR Little Endian is written explicit VR LE and then deflated (PS3.5 A.5:
    raw RFC 1951, no zlib header, padded to even length). Compressed syntaxes are
    written explicit VR LE with the pixel data as the data set holds it (already
    encapsulated).
    """
    # Iterating a Dataset yields its elements; the tags come from keys().
    tags = list(dataset.keys())
    if any(tag.group == 0x0002 for tag in tags):
        dataset = Dataset({tag: dataset[tag] for tag in tags if tag.group != 0x0002})
    output = DicomBytesIO()
    output.is_little_endian = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    output.is_implicit_VR = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(output, dataset)
    encoded = output.getvalue()
    if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        encoded = deflater.compress(encoded) + deflater.flush()
        if len(encoded) & 1:
            encoded += b"\x00"  # PS3.5 A.5: an odd deflated stream gets one trailing NUL
    return bytes(encoded)


def contexts_for_datasets(datasets: Sequence[Dataset]) -> list[ProposedContext]:
    """Contexts for sending pydicom Datasets: per SOP class, the uncompressed syntaxes
    (we encode them ourselves), or the one compressed syntax its pixel data is in."""
    seen: dict[tuple[str, tuple[str, ...]], None] = {}
    for dataset in datasets:
        file_meta = getattr(dataset, "file_meta", None)
        syntax = str(file_meta.get("TransferSyntaxUID", "") or "") if file_meta else ""
        syntaxes: tuple[str, ...] = (
            (syntax,)
            if syntax and syntax not in UNCOMPRESSED_SYNTAXES
            else (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
        )
        seen[(str(dataset.SOPClassUID), syntaxes)] = None
    return [ProposedContext(sop_class, syntaxes) for sop_class, syntaxes in seen]


# --- Sharing files between associations ---------------------------------------------------


def plan_jobs(
    files: Sequence[tuple[int, DicomFile]], associations: int
) -> list[list[tuple[int, DicomFile]]]:
    """One job per association to open: batches of at most 128 contexts, each cut into
    parts of similar weight (bytes plus a per-file cost) so ``associations`` stay busy."""
    weights = [dicom_file.dataset_length + _PER_FILE_WEIGHT for _, dicom_file in files]
    total = sum(weights) or 1
    jobs: list[list[tuple[int, DicomFile]]] = []
    batches = batch_positions([dicom_file for _, dicom_file in files], MAX_PRESENTATION_CONTEXTS)
    for batch in batches:
        batch_weight = sum(weights[position] for position in batch)
        parts = max(1, min(len(batch), round(associations * batch_weight / total)))
        target = batch_weight / parts
        current: list[tuple[int, DicomFile]] = []
        current_weight = 0
        made = 0
        for position in batch:
            current.append(files[position])
            current_weight += weights[position]
            if current_weight >= target and made < parts - 1:
                jobs.append(current)
                made += 1
                current, current_weight = [], 0
        if current:
            jobs.append(current)
    return jobs


# A file costs a round trip and a few system calls whatever its size: count it as 64 KiB
# when sharing files between associations.
_PER_FILE_WEIGHT = 64 * 1024

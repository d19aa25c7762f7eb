"""Find the few attributes that name a stored file, without parsing the data set (sans-IO).

The Storage SCP needs five values to place an instance on disk: SOP Class UID
(0008,0016), SOP Instance UID (0008,0018), Patient ID (0010,0020), Study Instance UID
(0020,000D) and Series Instance UID (0020,000E). PS3.5 7.1: the elements of a data set
are in ascending tag order, so all five sit near the start and the scanner stops as soon
as it has passed (0020,000E). Everything else is stepped over by its length; the bytes
of a stepped-over value are never buffered.

The scanner walks element headers only (PS3.5 7.1.2 explicit VR, 7.1.3 implicit VR,
7.3 byte order). Elements of undefined length (PS3.5 7.5: sequences, encapsulated pixel
data per A.4, UN per 6.2.2) are entered with an explicit stack, never by recursion:
items of defined length are skipped whole, items of undefined length are walked until
their Item Delimitation Item. The depth is bounded (``MAX_NESTING_DEPTH``).

Decisions, documented once:

* An unknown transfer syntax UID is read as Explicit VR Little Endian: every transfer
  syntax the standard defined after the first three encodes its data set that way
  (PS3.5 Annex A), only the pixel data differs.
* Like pydicom, the first element of each data set (the top one and every item) is
  checked: a data set announced as explicit VR whose first "VR" is not two upper-case
  letters is read as implicit VR, and the reverse for a known VR in an implicit one.
* Patient ID is decoded with the character set of (0008,0005) through pydicom's codec
  table when its bytes are not plain ASCII; if that fails, or without (0008,0005),
  Latin-1 is used (it maps every byte, so decoding never fails). Leading and trailing
  spaces are dropped (PS3.5 Table 6.2-1: not significant for LO); UIDs lose their NUL
  and space padding (PS3.5 9.1).
* ``max_header_bytes`` bounds how far into the (inflated) data set the scanner looks;
  past it the scanner stops and reports what it found so far (``limit_reached``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "MAX_NESTING_DEPTH",
    "HeaderFields",
    "HeaderScanError",
    "HeaderScanner",
]

DEFAULT_MAX_HEADER_BYTES: Final = 8 * 1024 * 1024
MAX_NESTING_DEPTH: Final = 64

# PS3.5 Annex A: the transfer syntaxes whose data set encoding is not explicit VR LE.
_IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
_EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
# PS3.5 A.5 (Deflated Explicit VR Little Endian) and A.7 (JPIP Referenced Deflate): the
# whole data set is a raw RFC 1951 deflate stream, no zlib header.
_DEFLATED: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})

# PS3.5 7.1.2 Table 7.1-1: explicit VRs with 2 reserved bytes and a 32-bit length.
_LONG_LENGTH_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
# PS3.5 Table 6.2-1: every VR; used only to sniff an implicit/explicit mix-up.
_KNOWN_VRS: Final = _LONG_LENGTH_VRS | frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO",
        b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip

UNDEFINED_LENGTH: Final = 0xFFFFFFFF
# PS3.5 7.5.2 Table 7.5-1..3: item and delimiter tags (group FFFE).
_ITEM: Final = 0xFFFEE000
_ITEM_DELIMITATION: Final = 0xFFFEE00D
_SEQUENCE_DELIMITATION: Final = 0xFFFEE0DD

_SPECIFIC_CHARACTER_SET: Final = 0x00080005
_SOP_CLASS_UID: Final = 0x00080016
_SOP_INSTANCE_UID: Final = 0x00080018
_PATIENT_ID: Final = 0x00100020
_STUDY_INSTANCE_UID: Final = 0x0020000D
_SERIES_INSTANCE_UID: Final = 0x0020000E
_WANTED: Final = frozenset(
    {
        _SPECIFIC_CHARACTER_SET,
        _SOP_CLASS_UID,
        _SOP_INSTANCE_UID,
        _PATIENT_ID,
        _STUDY_INSTANCE_UID,
        _SERIES_INSTANCE_UID,
    }
)
# The largest value we are willing to keep for one of the wanted elements: a UI is at
# most 64 bytes, an LO 64 characters (up to 4 bytes each), (0008,0005) a few CS values.
_MAX_WANTED_VALUE: Final = 1024
# Inflate in small steps so a deflated data set is only expanded as far as needed.
_INFLATE_STEP: Final = 64 * 1024

# PS3.5 7.1.2/7.1.3: the first 8 bytes of an element (and of an item, 7.5).
_IMPLICIT_HEADER_LE: Final = struct.Struct("<HHL")
_IMPLICIT_HEADER_BE: Final = struct.Struct(">HHL")
_EXPLICIT_HEADER_LE: Final = struct.Struct("<HH2sH")
_EXPLICIT_HEADER_BE: Final = struct.Struct(">HH2sH")
_U32_LE: Final = struct.Struct("<L")
_U32_BE: Final = struct.Struct(">L")

# What the codec table of pydicom uses for text VRs: these bytes reset ISO 2022 escapes.
_TEXT_DELIMITERS: Final = {0x09, 0x0A, 0x0C, 0x0D}


class HeaderScanError(ValueError):
    """The data set header cannot be walked (truncated, a length beyond the data, ...)."""


@dataclass(frozen=True)
class HeaderFields:
    """The attributes that name a stored file; ``None`` when absent from the data set."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    patient_id: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None


class _Frame:
    """One level of the walk: a data set (elements) or the inside of an undefined-length
    element (items and the sequence delimiter), with the structs its encoding needs."""

    __slots__ = (
        "big_endian",
        "first_element",
        "header",
        "implicit_vr",
        "is_sequence",
        "long_length",
    )

    def __init__(self, *, is_sequence: bool, implicit_vr: bool, big_endian: bool) -> None:
        self.is_sequence = is_sequence
        self.big_endian = big_endian
        self.first_element = not is_sequence
        self.long_length = _U32_BE if big_endian else _U32_LE
        self._set_form(implicit_vr)

    def _set_form(self, implicit_vr: bool) -> None:
        self.implicit_vr = implicit_vr
        # PS3.5 7.5: item and delimiter headers have the implicit VR shape everywhere.
        if implicit_vr or self.is_sequence:
            self.header = _IMPLICIT_HEADER_BE if self.big_endian else _IMPLICIT_HEADER_LE
        else:
            self.header = _EXPLICIT_HEADER_BE if self.big_endian else _EXPLICIT_HEADER_LE

    def sniff_vr_form(self, candidate_vr: bytes) -> bool:
        """Fix an implicit/explicit mix-up from the first element; True if it changed."""
        if self.implicit_vr:
            mixed_up = candidate_vr in _KNOWN_VRS
        else:
            mixed_up = not (candidate_vr.isalpha() and candidate_vr.isupper())
        if mixed_up:
            self._set_form(not self.implicit_vr)
        return mixed_up


class HeaderScanner:
    """Incremental scanner: ``feed()`` chunks of the data set, then ``result()``.

    ``done`` turns true once (0020,000E) has been passed, ``max_header_bytes`` have been
    looked at, or ``finish()`` was called at the end of the data. Feeding after that is
    a cheap no-op, so the caller may keep feeding without checking.
    """

    def __init__(
        self, transfer_syntax_uid: str, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    ) -> None:
        if max_header_bytes <= 0:
            raise ValueError("max_header_bytes must be positive")
        transfer_syntax_uid = transfer_syntax_uid.rstrip("\x00 ")
        self._max_header_bytes = max_header_bytes
        self._inflater = (
            zlib.decompressobj(-zlib.MAX_WBITS) if transfer_syntax_uid in _DEFLATED else None
        )
        self._stack = [
            _Frame(
                is_sequence=False,
                implicit_vr=transfer_syntax_uid == _IMPLICIT_VR_LITTLE_ENDIAN,
                big_endian=transfer_syntax_uid == _EXPLICIT_VR_BIG_ENDIAN,
            )
        ]
        self._pending = bytearray()  # bytes of an element header/value not complete yet
        self._skip = 0  # bytes of a stepped-over value still to come
        self._consumed = 0  # data set bytes (inflated) handed to the walker so far
        self._values: dict[int, bytes] = {}
        self._done = False
        self._result: HeaderFields | None = None
        self._limit_reached = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def limit_reached(self) -> bool:
        """True when the scan stopped at ``max_header_bytes`` before (0020,000E)."""
        return self._limit_reached

    def feed(self, data: memoryview | bytes) -> None:
        """Scan the next chunk. The chunk is not kept: needed bytes are copied."""
        if self._done:
            return
        if self._inflater is None:
            self._walk_chunk(memoryview(data))
            return
        self._inflate(bytes(data))

    def finish(self) -> None:
        """The data set has ended. Raises ``HeaderScanError`` if it ended mid-element."""
        if self._done:
            return
        if self._inflater is not None:
            self._inflate(b"")
            if self._done:
                return
            self._walk_chunk(memoryview(self._inflater.flush()))
            if self._done:
                return
        if self._skip or self._pending or len(self._stack) > 1:
            raise HeaderScanError(
                "the data set ends inside an element "
                f"({self._skip} value bytes missing, {len(self._pending)} header bytes "
                f"left over, nesting depth {len(self._stack) - 1})"
            )
        self._done = True

    def result(self) -> HeaderFields:
        """The values found so far (complete once ``done``)."""
        if self._result is not None:
            return self._result
        values = self._values
        fields = HeaderFields(
            sop_class_uid=_decode_uid(values.get(_SOP_CLASS_UID)),
            sop_instance_uid=_decode_uid(values.get(_SOP_INSTANCE_UID)),
            patient_id=_decode_patient_id(
                values.get(_PATIENT_ID), values.get(_SPECIFIC_CHARACTER_SET)
            ),
            study_instance_uid=_decode_uid(values.get(_STUDY_INSTANCE_UID)),
            series_instance_uid=_decode_uid(values.get(_SERIES_INSTANCE_UID)),
        )
        if self._done:
            self._result = fields  # nothing can change any more
        return fields

    # -- internals ---------------------------------------------------------------------

    def _inflate(self, compressed: bytes) -> None:
        inflater = self._inflater
        assert inflater is not None
        data = compressed
        while not self._done:
            budget = min(_INFLATE_STEP, self._max_header_bytes - self._consumed)
            # budget > 0 here: reaching the limit sets _done in _walk_chunk. (A
            # max_length of 0 would mean "no limit" to zlib.)
            try:
                output = inflater.decompress(data, budget)
            except zlib.error as exc:
                raise HeaderScanError(f"the deflated data set is corrupt: {exc}") from None
            data = inflater.unconsumed_tail
            if not output:
                break
            self._walk_chunk(memoryview(output))

    def _walk_chunk(self, data: memoryview) -> None:
        room = self._max_header_bytes - self._consumed
        hit_limit = len(data) >= room
        if hit_limit:
            data = data[:room]
        self._consumed += len(data)
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        if data:
            pending = self._pending
            if pending:
                pending += data
                del pending[: self._walk(pending)]
            else:
                # Walk the chunk itself (often a whole 256 KiB read): only an element
                # cut by the chunk's end is copied, to wait for the next chunk.
                consumed = self._walk(data)
                if consumed < len(data) and not self._done:
                    self._pending = bytearray(data[consumed:])
        if hit_limit and not self._done:
            self._done = True
            self._limit_reached = True

    def _walk(self, buffer: bytearray | memoryview) -> int:
        """Consume as many complete headers from ``buffer`` as possible; returns how
        many bytes were consumed (the rest is an element not complete yet)."""
        end = len(buffer)
        position = 0
        stack = self._stack
        top = stack[0]
        frame = stack[-1]
        while end - position >= 8:
            if frame.is_sequence:
                group, element, length = frame.header.unpack_from(buffer, position)
                tag = group << 16 | element
                position += 8
                if tag == _ITEM:
                    if length == UNDEFINED_LENGTH:
                        frame = self._push(False, frame.implicit_vr, frame.big_endian)
                        continue
                    position += length
                elif tag == _SEQUENCE_DELIMITATION:
                    stack.pop()
                    frame = stack[-1]
                    continue
                else:
                    raise HeaderScanError(
                        f"expected an item or sequence delimiter, found ({group:04X},{element:04X})"
                    )
            else:
                # One unpack per element: (group, element, length) in implicit VR,
                # (group, element, VR, 16-bit length) in explicit VR.
                fields = frame.header.unpack_from(buffer, position)
                group = fields[0]
                tag = group << 16 | fields[1]
                if tag > _SERIES_INSTANCE_UID and frame is top:
                    self._done = True
                    break
                if group == 0xFFFE:
                    if tag == _ITEM_DELIMITATION and frame is not top:
                        stack.pop()
                        frame = stack[-1]
                        position += 8
                        continue
                    raise HeaderScanError(
                        f"unexpected delimiter ({group:04X},{fields[1]:04X}) in a data set"
                    )
                if frame.first_element:
                    frame.first_element = False
                    if frame.sniff_vr_form(bytes(buffer[position + 4 : position + 6])):
                        fields = frame.header.unpack_from(buffer, position)
                header_length = 8
                if frame.implicit_vr:
                    length = fields[2]
                    vr = b""
                else:
                    vr = fields[2]
                    length = fields[3]
                    if vr in _LONG_LENGTH_VRS:
                        if end - position < 12:
                            break
                        (length,) = frame.long_length.unpack_from(buffer, position + 8)
                        header_length = 12
                if length == UNDEFINED_LENGTH:
                    position += header_length
                    if vr == b"UN":
                        # PS3.5 6.2.2: an undefined-length UN stays in implicit VR LE form.
                        frame = self._push(True, True, False)
                    else:
                        frame = self._push(True, frame.implicit_vr, frame.big_endian)
                    continue
                if tag in _WANTED and frame is top:
                    if length > _MAX_WANTED_VALUE:
                        raise HeaderScanError(
                            f"({group:04X},{fields[1]:04X}) has an implausible length {length}"
                        )
                    if end - position < header_length + length:
                        break
                    start = position + header_length
                    self._values[tag] = bytes(buffer[start : start + length])
                    position = start + length
                    if tag == _SERIES_INSTANCE_UID:
                        self._done = True
                        break
                    continue
                position += header_length + length
            if position > end:
                self._skip = position - end
                position = end
                break
        return position

    def _push(self, is_sequence: bool, implicit_vr: bool, big_endian: bool) -> _Frame:
        # A bounded explicit stack instead of recursion: a hostile peer cannot exhaust
        # the interpreter stack with deeply nested sequences.
        if len(self._stack) > MAX_NESTING_DEPTH:
            raise HeaderScanError(f"sequences nested deeper than {MAX_NESTING_DEPTH}")
        frame = _Frame(is_sequence=is_sequence, implicit_vr=implicit_vr, big_endian=big_endian)
        self._stack.append(frame)
        return frame


def _decode_uid(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    # PS3.5 9.1: padded with one NUL; strip spaces too, as writers get this wrong.
    return raw.decode("ascii", errors="replace").strip("\x00 ")


def _decode_patient_id(raw: bytes | None, raw_charset: bytes | None) -> str | None:
    if raw is None:
        return None
    if raw.isascii() and b"\x1b" not in raw:
        text = raw.decode("ascii")
    else:
        text = _decode_with_charset(raw, raw_charset)
    return text.strip(" \x00")


def _decode_with_charset(raw: bytes, raw_charset: bytes | None) -> str:
    if raw_charset:
        terms = [term.strip() for term in raw_charset.decode("ascii", "replace").split("\\")]
        try:
            from pydicom.charset import convert_encodings, decode_bytes

            return decode_bytes(raw, convert_encodings(terms), _TEXT_DELIMITERS)
        except Exception:  # any codec trouble: fall back to Latin-1 below
            pass
    return raw.decode("latin-1")

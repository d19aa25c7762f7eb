"""The DICOM Part 10 file header: preamble, prefix and File Meta Information (sans-IO).

A stored file is ``encode_file_meta(...)`` followed by the data set bytes exactly as they
arrived over the network. The header is hand-encoded with :mod:`struct` because it is
built once per received instance, on the hot path of the Storage SCP.

PS3.10 7.1: 128-byte preamble, the 4 bytes ``DICM``, then the group 0002 elements of
Table 7.1-1, always in Explicit VR Little Endian whatever the data set's transfer syntax.
"""

from __future__ import annotations

import functools
import struct

# One implementation, one identity: (0002,0012)/(0002,0013) carry the same values that
# the association negotiation sends (PS3.7 D.3.3.2), defined once in protocol.uids
# (a 2.25 UUID-derived UID and "AIODICOM_010").
from aiodicom.protocol.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = [
    "DICOM_PREFIX",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "PREAMBLE",
    "encode_file_meta",
]

# PS3.10 7.1 Note 1: an unused preamble is 128 bytes of 00H.
PREAMBLE = bytes(128)
DICOM_PREFIX = b"DICM"
# PS3.10 Table 7.1-1 (0002,0001): version 1 is the two bytes 00H 01H.
_META_VERSION = b"\x00\x01"

# Explicit VR LE element headers (PS3.5 7.1.2): short form tag, VR, uint16 length;
# long form (OB and the other 4-byte-length VRs) tag, VR, 2 reserved bytes, uint32.
_SHORT_HEADER = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2s2xL")
_GROUP = 0x0002

_UI_MAX = 64  # PS3.5 Table 6.2-1: UI at most 64 bytes
_SH_AE_MAX = 16  # PS3.5 Table 6.2-1: SH and AE at most 16 characters


def _short_element(element: int, vr: bytes, value: bytes) -> bytes:
    return _SHORT_HEADER.pack(_GROUP, element, vr, len(value)) + value


def _uid_value(uid: str, what: str) -> bytes:
    # PS3.5 6.2 (UI): pad an odd-length UID with a single trailing NUL.
    raw = uid.encode("ascii")
    if not raw or len(raw) > _UI_MAX:
        raise ValueError(f"{what} must be 1 to {_UI_MAX} ASCII characters, got {uid!r}")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text_value(text: str, what: str) -> bytes:
    # PS3.5 6.2 (SH, AE): pad an odd-length value with a trailing space.
    raw = text.encode("ascii")
    if len(raw) > _SH_AE_MAX or b"\\" in raw:
        raise ValueError(f"{what} must be at most {_SH_AE_MAX} ASCII characters, got {text!r}")
    return raw + b" " if len(raw) % 2 else raw


def encode_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
    source_ae_title: str | None = None,
) -> bytes:
    """Preamble + ``DICM`` + File Meta Information for one stored instance.

    ``source_ae_title`` is the calling AE title of the association that sent the
    instance (0002,0016); leading/trailing spaces are not significant for AE (PS3.5
    Table 6.2-1) so it is stripped, and left out when empty or ``None``.
    Raises ``ValueError`` for a value that cannot be encoded (non-ASCII, too long).
    """
    # Only the SOP Instance UID changes from one file to the next: the elements before
    # and after it are encoded once per (class, syntax, implementation, AE) and reused.
    before, after = _fixed_elements(
        sop_class_uid,
        transfer_syntax_uid,
        implementation_class_uid,
        implementation_version_name,
        source_ae_title,
    )
    instance = _short_element(0x0003, b"UI", _uid_value(sop_instance_uid, "SOP Instance UID"))
    # PS3.10 Table 7.1-1 (0002,0000): the number of bytes after this element's value up
    # to the end of the group.
    length = len(before) + len(instance) + len(after)
    return b"".join((_HEAD, _GROUP_LENGTH.pack(length), before, instance, after))


_HEAD = PREAMBLE + DICOM_PREFIX + _SHORT_HEADER.pack(_GROUP, 0x0000, b"UL", 4)
_GROUP_LENGTH = struct.Struct("<L")


@functools.lru_cache(maxsize=256)
def _fixed_elements(
    sop_class_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae_title: str | None,
) -> tuple[bytes, bytes]:
    """The encoded elements before (0002,0003) and after it, in tag order."""
    before = (
        _LONG_HEADER.pack(_GROUP, 0x0001, b"OB", len(_META_VERSION))
        + _META_VERSION
        + _short_element(0x0002, b"UI", _uid_value(sop_class_uid, "SOP Class UID"))
    )
    after = [
        _short_element(0x0010, b"UI", _uid_value(transfer_syntax_uid, "Transfer Syntax UID")),
        _short_element(
            0x0012, b"UI", _uid_value(implementation_class_uid, "Implementation Class UID")
        ),
    ]
    if implementation_version_name:
        after.append(
            _short_element(
                0x0013,
                b"SH",
                _text_value(implementation_version_name, "Implementation Version Name"),
            )
        )
    ae_title = (source_ae_title or "").strip()
    if ae_title:
        after.append(_short_element(0x0016, b"AE", _text_value(ae_title, "Source AE Title")))
    return before, b"".join(after)

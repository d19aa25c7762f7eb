"""The UIDs association negotiation needs: our implementation identity, Verification, the
storage SOP classes and the transfer syntaxes we accept.

The two big sets are derived from pydicom's UID dictionary (a copy of PS3.6 Table A-1) at
import, so that a newer pydicom brings newer SOP classes and transfer syntaxes with it and
no hand-kept list falls behind the standard.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydicom._uid_dict import UID_dictionary

# --- Our identity (PS3.7 D.3.3.2) -------------------------------------------------------------

# A "2.25." UID (PS3.5 B.2: a UUID written as one decimal integer), generated once for
# aiodicom; it names the implementation, not a release.
IMPLEMENTATION_CLASS_UID = "2.25.230585382240054472309888175618475010952"
# PS3.7 D.3.3.2: 1 to 16 characters of the basic G0 set.
IMPLEMENTATION_VERSION_NAME = "AIODICOM_010"

# --- SOP classes and transfer syntaxes named in code --------------------------------------------

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"  # PS3.4 Annex A

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"  # PS3.5 A.1, the DICOM default
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"  # PS3.5 A.2
ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.98"  # PS3.5 A.4.11
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"  # PS3.5 A.5
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"  # PS3.5 A.3 (retired, still met in the wild)
JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)

# --- Storage SOP classes (PS3.4 Annex B, Table B.5-1) -----------------------------------------

# Dictionary entries that have "Storage" in their name but do not travel by C-STORE as a
# composite instance, so a storage SCP has nothing to do with them:
#   - "Storage Commitment Push/Pull Model SOP Class" (1.2.840.10008.1.20.1/.2): PS3.4
#     Annex J, N-ACTION/N-EVENT-REPORT, a different service altogether.
#   - "Media Storage Directory Storage" (1.2.840.10008.1.3.10): the DICOMDIR, which only
#     exists on media (PS3.10, PS3.4 Annex F), never sent over the network.
#   - "Storage Service Class" (1.2.840.10008.4.2) has type "Service Class", not "SOP Class",
#     so the type test already leaves it out.
# Two retired entries under 1.2.840.10008.5.1.4.1.1 carry no name in PS3.6 (…1.12.77 and
# …1.40) and so fall outside the name rule; nothing sends them.
# Kept on purpose, beyond Table B.5-1: the retired classes (Standalone Overlay/Curve, the
# "Trial" SRs, Stored Print and Hardcopy, ...) and the classes of the other storage services
# (Hanging Protocol, Color Palette (PS3.4 Annex W), Implant Templates, Protocol Approval,
# Inventory): they all move one composite instance per C-STORE, which we store as received.
_NOT_C_STORE_PREFIXES = ("Storage Commitment", "Media Storage Directory")


def _storage_sop_classes(
    dictionary: Mapping[str, tuple[str, str, str, str, str]],
) -> frozenset[str]:
    return frozenset(
        uid
        for uid, (name, uid_type, _info, _retired, _keyword) in dictionary.items()
        if uid_type == "SOP Class"
        and "Storage" in name
        and not name.startswith(_NOT_C_STORE_PREFIXES)
    )


STORAGE_SOP_CLASSES: frozenset[str] = _storage_sop_classes(UID_dictionary)

# --- Transfer syntaxes (PS3.5 Section 10, Annex A) ---------------------------------------------

# Dictionary "Transfer Syntax" entries that are not an encoding of a data set on a DIMSE
# association, so no SCU can send them in a C-STORE:
#   - 1.2.840.10008.1.2.6.1 "RFC 2557 MIME encapsulation" and 1.2.840.10008.1.2.6.2 "XML
#     Encoding" (both retired): web/media encodings, not binary DICOM.
#   - 1.2.840.10008.1.20 "Papyrus 3 Implicit VR Little Endian" (retired): a private file
#     format's UID that PS3.6 once listed, never a network transfer syntax.
_NOT_NETWORK_TRANSFER_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2", "1.2.840.10008.1.20"}
)


def _all_transfer_syntaxes(
    dictionary: Mapping[str, tuple[str, str, str, str, str]],
) -> tuple[str, ...]:
    # Preference order: the two little endian uncompressed syntaxes first (every peer can
    # read them), then the rest in PS3.6 order (deflate, big endian, the JPEG family,
    # JPEG-LS, JPEG 2000, MPEG/HEVC, HTJ2K, RLE, SMPTE...). Retired JPEG processes are kept:
    # the data is stored as received, and an old modality may still send them.
    leading = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
    rest = tuple(
        uid
        for uid, (_name, uid_type, *_more) in dictionary.items()
        if uid_type == "Transfer Syntax"
        and uid not in leading
        and uid not in _NOT_NETWORK_TRANSFER_SYNTAXES
    )
    return leading + rest


ALL_TRANSFER_SYNTAXES: tuple[str, ...] = _all_transfer_syntaxes(UID_dictionary)

# The default abstract syntaxes a storage SCP accepts.
STORAGE_SCP_ABSTRACT_SYNTAXES: frozenset[str] = STORAGE_SOP_CLASSES | {VERIFICATION_SOP_CLASS}

__all__ = [
    "ALL_TRANSFER_SYNTAXES",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "JPEG_2000",
    "JPEG_2000_LOSSLESS",
    "JPEG_BASELINE_8BIT",
    "JPEG_EXTENDED_12BIT",
    "JPEG_LOSSLESS",
    "JPEG_LOSSLESS_SV1",
    "JPEG_LS_LOSSLESS",
    "JPEG_LS_NEAR_LOSSLESS",
    "RLE_LOSSLESS",
    "STORAGE_SCP_ABSTRACT_SYNTAXES",
    "STORAGE_SOP_CLASSES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "VERIFICATION_SOP_CLASS",
]

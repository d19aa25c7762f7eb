"""encode_pdu / decode_pdu against bytes worked out by hand from PS3.8 9.3 and PS3.7 D.3.3.

Golden byte strings are written field by field, each with the name the standard's table
gives it. Hypothesis then checks ``decode_pdu(encode_pdu(x)) == x`` for every PDU type, and
the malformed cases check the A-ABORT reason that comes with each refusal.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.protocol.codes import (
    AbortReason,
    ContextResult,
    RejectACSEReason,
    RejectResult,
    RejectSource,
)
from aiodicom.protocol.errors import LocalProtocolError, RemoteProtocolError
from aiodicom.protocol.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownUserItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserItem,
)
from aiodicom.protocol.pdu_codec import (
    decode_pdu,
    encode_pdata_header,
    encode_pdu,
    encode_pdv_header,
)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"  # 25 characters
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # 25 characters
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"  # 17 characters

# --- Golden PDUs (PS3.8 Tables 9-11 .. 9-26) --------------------------------------------------

# The A-ASSOCIATE-RQ fixed part and the items before User Information (PS3.8 Table 9-11).
RQ_BEFORE_USER_INFO = [
    b"\x00\x01",  # Protocol-version: bit 0 set (version 1)
    b"\x00\x00",  # Reserved
    b"ANY-SCP         ",  # Called-AE-title, 16 bytes, space padded
    b"ECHOSCU         ",  # Calling-AE-title, 16 bytes, space padded
    bytes(32),  # Reserved (bytes 43-74)
    # Application Context Item (PS3.8 Table 9-12)
    b"\x10",  # Item-type 10H
    b"\x00",  # Reserved
    b"\x00\x15",  # Item-length 21
    b"1.2.840.10008.3.1.1.1",  # Application-context-name
    # Presentation Context Item, RQ (PS3.8 Table 9-13)
    b"\x20",  # Item-type 20H
    b"\x00",  # Reserved
    b"\x00\x2e",  # Item-length 46 = 4 + (4 + 17) + (4 + 17)
    b"\x01",  # Presentation-context-ID 1
    b"\x00\x00\x00",  # Reserved x3
    b"\x30\x00\x00\x11",  # Abstract Syntax Sub-Item (Table 9-14): type 30H, length 17
    b"1.2.840.10008.1.1",  # Abstract-syntax-name: Verification
    b"\x40\x00\x00\x11",  # Transfer Syntax Sub-Item (Table 9-15): type 40H, length 17
    b"1.2.840.10008.1.2",  # Transfer-syntax-name: Implicit VR Little Endian
]

GOLDEN_RQ = b"".join(
    [
        b"\x01",  # PDU-type 01H
        b"\x00",  # Reserved
        b"\x00\x00\x00\xb5",  # PDU-length 181 = 68 + 25 + 50 + 38
        *RQ_BEFORE_USER_INFO,
        # User Information Item (PS3.8 Table 9-16)
        b"\x50",  # Item-type 50H
        b"\x00",  # Reserved
        b"\x00\x22",  # Item-length 34 = 8 + 11 + 15
        b"\x51\x00\x00\x04",  # Maximum Length Sub-Item (Table D.1-1): type 51H, length 4
        b"\x00\x00\x40\x00",  # Maximum-length-received 16384
        b"\x52\x00\x00\x07",  # Implementation Class UID Sub-Item (PS3.7 Table D.3-1)
        b"1.2.3.4",  # Implementation-class-uid
        b"\x55\x00\x00\x0b",  # Implementation Version Name Sub-Item (PS3.7 Table D.3-3)
        b"AIODICOM_01",  # Implementation-version-name
    ]
)

VALUE_RQ = AssociateRQ(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LE,)),),
    user_items=(
        MaximumLength(16384),
        ImplementationClassUID("1.2.3.4"),
        ImplementationVersionName("AIODICOM_01"),
    ),
)

GOLDEN_AC = b"".join(
    [
        b"\x02",  # PDU-type 02H
        b"\x00",  # Reserved
        b"\x00\x00\x00\x9d",  # PDU-length 157 = 68 + 25 + 29 + 12 + 23
        b"\x00\x01",  # Protocol-version
        b"\x00\x00",  # Reserved
        b"ANY-SCP         ",  # Reserved (the RQ's called AE title, sent back)
        b"ECHOSCU         ",  # Reserved (the RQ's calling AE title, sent back)
        bytes(32),  # Reserved
        b"\x10\x00\x00\x15",  # Application Context Item, length 21
        b"1.2.840.10008.3.1.1.1",
        # Presentation Context Item, AC (PS3.8 Table 9-18)
        b"\x21",  # Item-type 21H
        b"\x00",  # Reserved
        b"\x00\x19",  # Item-length 25 = 4 + (4 + 17)
        b"\x01",  # Presentation-context-ID 1
        b"\x00",  # Reserved
        b"\x00",  # Result/Reason 0: acceptance
        b"\x00",  # Reserved
        b"\x40\x00\x00\x11",  # Transfer Syntax Sub-Item (Table 9-19), length 17
        b"1.2.840.10008.1.2",
        # A refused context: the transfer syntax sub-item is still sent, here empty.
        b"\x21\x00\x00\x08",  # Item-type 21H, Item-length 8
        b"\x03",  # Presentation-context-ID 3
        b"\x00",  # Reserved
        b"\x03",  # Result/Reason 3: abstract syntax not supported
        b"\x00",  # Reserved
        b"\x40\x00\x00\x00",  # Transfer Syntax Sub-Item, length 0
        # User Information Item
        b"\x50\x00\x00\x13",  # Item-type 50H, Item-length 19 = 8 + 11
        b"\x51\x00\x00\x04",  # Maximum Length Sub-Item (Table D.1-2)
        b"\x00\x01\x00\x00",  # Maximum-length-received 65536
        b"\x52\x00\x00\x07",  # Implementation Class UID Sub-Item
        b"1.2.3.4",
    ]
)

VALUE_AC = AssociateAC(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT_VR_LE),
        PresentationContextAC(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
    ),
    user_items=(MaximumLength(65536), ImplementationClassUID("1.2.3.4")),
)

GOLDEN_RJ = bytes.fromhex(
    "03"  # PDU-type 03H
    "00"  # Reserved
    "00000004"  # PDU-length 4
    "00"  # Reserved
    "01"  # Result 1: rejected-permanent
    "01"  # Source 1: DICOM UL service-user
    "07"  # Reason/Diag. 7: called-AE-title-not-recognized
)

GOLDEN_PDATA = bytes.fromhex(
    "04"  # PDU-type 04H
    "00"  # Reserved
    "00000012"  # PDU-length 18 = (4 + 6) + (4 + 4)
    # Presentation-data-value Item (PS3.8 Table 9-23)
    "00000006"  # Item-length 6 = context ID + control header + 4 data bytes
    "01"  # Presentation-context-ID 1
    "03"  # Message control header (E.2): command, last fragment
    "01020304"  # fragment
    "00000004"  # Item-length 4
    "03"  # Presentation-context-ID 3
    "02"  # Message control header: data set, last fragment
    "aabb"  # fragment
)

GOLDEN_RELEASE_RQ = bytes.fromhex("05000000000400000000")  # Table 9-24
GOLDEN_RELEASE_RP = bytes.fromhex("06000000000400000000")  # Table 9-25
GOLDEN_ABORT = bytes.fromhex(
    "07"  # PDU-type 07H
    "00"  # Reserved
    "00000004"  # PDU-length 4
    "00"  # Reserved
    "00"  # Reserved
    "02"  # Source 2: DICOM UL service-provider
    "06"  # Reason/Diag. 6: invalid-PDU-parameter value
)

GOLDEN_PDUS: list[tuple[bytes, PDU]] = [
    (GOLDEN_RQ, VALUE_RQ),
    (GOLDEN_AC, VALUE_AC),
    (GOLDEN_RJ, AssociateRJ(1, 1, 7)),
    (
        GOLDEN_PDATA,
        PDataTF(
            (
                PresentationDataValue(1, 0x03, b"\x01\x02\x03\x04"),
                PresentationDataValue(3, 0x02, b"\xaa\xbb"),
            )
        ),
    ),
    (GOLDEN_RELEASE_RQ, ReleaseRQ()),
    (GOLDEN_RELEASE_RP, ReleaseRP()),
    (GOLDEN_ABORT, Abort(2, 6)),
]


@pytest.mark.parametrize(("golden", "value"), GOLDEN_PDUS, ids=lambda x: type(x).__name__)
def test_golden_pdu_encodes_to_the_bytes(golden: bytes, value: PDU) -> None:
    assert encode_pdu(value) == golden


@pytest.mark.parametrize(("golden", "value"), GOLDEN_PDUS, ids=lambda x: type(x).__name__)
def test_golden_pdu_decodes_from_the_bytes(golden: bytes, value: PDU) -> None:
    assert decode_pdu(golden) == value
    assert decode_pdu(bytearray(golden)) == value
    assert decode_pdu(memoryview(golden)) == value


# --- Golden User Information sub-items (PS3.7 D.3.3) ------------------------------------------


def rq_with_user_info(user_info_body: bytes) -> bytes:
    """GOLDEN_RQ with its User Information item replaced (lengths counted, fields literal)."""
    body = b"".join(RQ_BEFORE_USER_INFO) + b"\x50\x00" + len(user_info_body).to_bytes(2, "big")
    body += user_info_body
    return b"\x01\x00" + len(body).to_bytes(4, "big") + body


GOLDEN_USER_ITEMS: list[tuple[bytes, UserItem]] = [
    (
        b"".join(
            [
                b"\x53\x00\x00\x04",  # Asynchronous Operations Window (Table D.3-7), length 4
                b"\x00\x05",  # Maximum-number-operations-invoked 5
                b"\x00\x01",  # Maximum-number-operations-performed 1
            ]
        ),
        AsynchronousOperationsWindow(5, 1),
    ),
    (
        b"".join(
            [
                b"\x54\x00\x00\x1d",  # SCP/SCU Role Selection (Table D.3-9), length 29
                b"\x00\x19",  # UID-length 25
                b"1.2.840.10008.5.1.4.1.1.2",  # SOP-class-uid
                b"\x01",  # SCU-role: proposed
                b"\x00",  # SCP-role: not proposed
            ]
        ),
        RoleSelection(CT_IMAGE_STORAGE, scu_role=True, scp_role=False),
    ),
    (
        b"".join(
            [
                b"\x56\x00\x00\x1e",  # SOP Class Extended Negotiation (Table D.3-11), length 30
                b"\x00\x19",  # SOP-class-uid-length 25
                b"1.2.840.10008.5.1.4.1.1.2",  # SOP-class-uid
                b"\x01\x00\x01",  # Service-class-application-information
            ]
        ),
        SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, b"\x01\x00\x01"),
    ),
    (
        b"".join(
            [
                b"\x57",  # SOP Class Common Extended Negotiation (Table D.3-12)
                b"\x00",  # Sub-item-version 0
                b"\x00\x4b",  # Item-length 75 = (2 + 25) + (2 + 17) + (2 + 27)
                b"\x00\x19",  # SOP-class-uid-length 25
                b"1.2.840.10008.5.1.4.1.1.2",  # SOP-class-uid
                b"\x00\x11",  # Service-class-uid-length 17
                b"1.2.840.10008.4.2",  # Service-class-uid
                b"\x00\x1b",  # Related-general-sop-class-identification-length 27
                b"\x00\x19",  # Related-general-sop-class-uid-length 25 (Table D.3-13)
                b"1.2.840.10008.5.1.4.1.1.1",  # Related-general-sop-class-uid
            ]
        ),
        SOPClassCommonExtendedNegotiation(
            CT_IMAGE_STORAGE, STORAGE_SERVICE_CLASS, (CR_IMAGE_STORAGE,)
        ),
    ),
    (
        b"".join(
            [
                b"\x58\x00\x00\x10",  # User Identity, RQ (Table D.3-14), length 16
                b"\x02",  # User-Identity-Type 2: username and passcode
                b"\x01",  # Positive-response-requested: yes
                b"\x00\x04",  # Primary-field-length 4
                b"user",  # Primary-field
                b"\x00\x06",  # Secondary-field-length 6
                b"secret",  # Secondary-field
            ]
        ),
        UserIdentityRQ(2, True, b"user", b"secret"),
    ),
    (
        b"".join(
            [
                b"\x58\x00\x00\x0a",  # User Identity, RQ, length 10
                b"\x01",  # User-Identity-Type 1: username
                b"\x00",  # Positive-response-requested: no
                b"\x00\x04",  # Primary-field-length 4
                b"user",  # Primary-field
                b"\x00\x00",  # Secondary-field-length 0
            ]
        ),
        UserIdentityRQ(1, False, b"user"),
    ),
    (
        b"".join(
            [
                b"\x59\x00\x00\x06",  # User Identity, AC (Table D.3-15), length 6
                b"\x00\x04",  # Server-response-length 4
                b"ok!!",  # Server-response
            ]
        ),
        UserIdentityAC(b"ok!!"),
    ),
    (
        b"\x70\x00\x00\x03abc",  # an item type no edition defines: kept as it came
        UnknownUserItem(0x70, b"abc"),
    ),
]


@pytest.mark.parametrize(("golden", "item"), GOLDEN_USER_ITEMS, ids=lambda x: type(x).__name__)
def test_golden_user_item_both_directions(golden: bytes, item: UserItem) -> None:
    value = AssociateRQ("ANY-SCP", "ECHOSCU", VALUE_RQ.presentation_contexts, (item,))
    assert encode_pdu(value) == rq_with_user_info(golden)
    assert decode_pdu(rq_with_user_info(golden)) == value


def test_pdata_header_helpers_match_the_whole_pdu_encoding() -> None:
    data = b"\x01\x02\x03\x04"
    pdv_header = encode_pdv_header(1, is_command=True, is_last=True, data_length=len(data))
    assert pdv_header == bytes.fromhex("000000060103")
    assert encode_pdv_header(3, is_command=False, is_last=False, data_length=0) == bytes.fromhex(
        "000000020300"
    )
    assert encode_pdata_header(10) == bytes.fromhex("04000000000a")
    whole = encode_pdu(PDataTF((PresentationDataValue(1, 0x03, data),)))
    assert encode_pdata_header(10) + pdv_header + data == whole


def test_pdata_header_helpers_refuse_out_of_range_values() -> None:
    with pytest.raises(LocalProtocolError):
        encode_pdata_header(2**32)
    with pytest.raises(LocalProtocolError):
        encode_pdv_header(256, is_command=False, is_last=False, data_length=0)
    with pytest.raises(LocalProtocolError):
        encode_pdv_header(1, is_command=False, is_last=False, data_length=-1)


# --- Lenient decoding, where the standard asks for it -----------------------------------------


def test_reserved_fields_are_not_tested() -> None:
    data = bytearray(GOLDEN_RQ)
    data[1] = 0xFF  # PDU reserved byte
    data[8:10] = b"\xff\xff"  # reserved after protocol-version
    data[42:74] = b"\xee" * 32  # reserved bytes 43-74
    assert decode_pdu(bytes(data)) == VALUE_RQ
    abort = bytearray(GOLDEN_ABORT)
    abort[6:8] = b"\x12\x34"
    assert decode_pdu(bytes(abort)) == Abort(2, 6)


def test_only_bit_0_of_the_protocol_version_is_tested() -> None:
    data = bytearray(GOLDEN_RQ)
    data[6:8] = b"\x00\x03"
    assert decode_pdu(bytes(data)).protocol_version == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("version", [b"\x00\x00", b"\x00\x02", b"\x80\x00"])
def test_rq_without_protocol_version_1_carries_the_rejection(version: bytes) -> None:
    data = bytearray(GOLDEN_RQ)
    data[6:8] = version
    with pytest.raises(RemoteProtocolError) as caught:
        decode_pdu(bytes(data))
    reject = caught.value.reject
    assert reject is not None
    assert (reject.result, reject.source, reject.reason) == (
        RejectResult.PERMANENT,
        RejectSource.SERVICE_PROVIDER_ACSE,
        RejectACSEReason.PROTOCOL_VERSION_NOT_SUPPORTED,
    )


def test_ac_without_protocol_version_1_is_an_abort() -> None:
    data = bytearray(GOLDEN_AC)
    data[6:8] = b"\x00\x00"
    with pytest.raises(RemoteProtocolError) as caught:
        decode_pdu(bytes(data))
    assert caught.value.reject is None
    assert caught.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_nul_padding_of_ae_titles_and_uids_is_dropped() -> None:
    data = bytearray(GOLDEN_RQ)
    data[10:26] = b"ANY-SCP" + bytes(9)
    assert decode_pdu(bytes(data)) == VALUE_RQ
    padded = rq_with_user_info(b"\x52\x00\x00\x08" + b"1.2.3.4\x00")
    assert decode_pdu(padded).find_user_item(ImplementationClassUID) == (  # type: ignore[union-attr]
        ImplementationClassUID("1.2.3.4")
    )


def test_unrecognised_item_types_outside_user_info_are_skipped() -> None:
    # PS3.8 9.3.1: items of unrecognised type are ignored and skipped.
    extra = b"\x77\x00\x00\x02zz"
    body = GOLDEN_RQ[6:] + extra
    data = b"\x01\x00" + len(body).to_bytes(4, "big") + body
    assert decode_pdu(data) == VALUE_RQ
    # ... also inside a presentation context item
    context = b"\x20\x00\x00\x34" + b"\x01\x00\x00\x00" + b"\x77\x00\x00\x02zz"
    context += (
        b"\x30\x00\x00\x11" + b"1.2.840.10008.1.1" + b"\x40\x00\x00\x11" + IMPLICIT_VR_LE.encode()
    )
    body = b"".join(RQ_BEFORE_USER_INFO[:9]) + context + GOLDEN_RQ[6 + 68 + 25 + 50 :]
    data = b"\x01\x00" + len(body).to_bytes(4, "big") + body
    assert decode_pdu(data) == VALUE_RQ


def test_missing_application_context_and_user_info_decode_as_empty() -> None:
    body = b"".join(RQ_BEFORE_USER_INFO[:5]) + b"".join(RQ_BEFORE_USER_INFO[9:])
    data = b"\x01\x00" + len(body).to_bytes(4, "big") + body
    decoded = decode_pdu(data)
    assert decoded == AssociateRQ(
        "ANY-SCP",
        "ECHOSCU",
        VALUE_RQ.presentation_contexts,
        user_items=(),
        application_context_name="",
    )


def test_refused_ac_context_without_transfer_syntax_is_tolerated() -> None:
    context = b"\x21\x00\x00\x04" + b"\x05\x00\x04\x00"  # context 5, result 4, no sub-item
    body = GOLDEN_AC[6:] + context
    value = decode_pdu(b"\x02\x00" + len(body).to_bytes(4, "big") + body)
    assert isinstance(value, AssociateAC)
    assert value.presentation_contexts[-1] == PresentationContextAC(5, 4, "")


def test_user_identity_without_secondary_length_is_tolerated() -> None:
    item = b"\x58\x00\x00\x08" + b"\x01\x00" + b"\x00\x04user"
    decoded = decode_pdu(rq_with_user_info(item))
    assert decoded.find_user_item(UserIdentityRQ) == UserIdentityRQ(1, False, b"user")  # type: ignore[union-attr]


def test_bits_2_to_7_of_the_message_control_header_are_kept_not_tested() -> None:
    data = bytes.fromhex("04 00 00000006 00000002 01 ff".replace(" ", ""))
    value = decode_pdu(data)
    assert value == PDataTF((PresentationDataValue(1, 0xFF, b""),))


# --- Malformed input --------------------------------------------------------------------------

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


def refusal(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_pdu(data)
    assert caught.value.abort_source == 2  # PS3.8 Table 9-26: service-provider
    return caught.value


def with_body(pdu_type: int, body: bytes) -> bytes:
    return bytes((pdu_type, 0)) + len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("first_byte", [0x00, 0x08, 0x16, 0x47, 0xFF])
def test_unknown_pdu_type(first_byte: int) -> None:
    assert refusal(bytes((first_byte,)) + bytes(9)).abort_reason == AbortReason.UNRECOGNIZED_PDU


@pytest.mark.parametrize("size", range(6))
def test_truncated_header(size: int) -> None:
    assert refusal(GOLDEN_RELEASE_RQ[:size]).abort_reason == INVALID


@pytest.mark.parametrize("golden", [g for g, _ in GOLDEN_PDUS], ids=lambda g: f"type{g[0]}")
def test_truncated_or_overlong_body(golden: bytes) -> None:
    assert refusal(golden[:-1]).abort_reason == INVALID
    assert refusal(golden + b"\x00").abort_reason == INVALID


def test_associate_shorter_than_its_fixed_part() -> None:
    assert refusal(with_body(0x01, GOLDEN_RQ[6:70])).abort_reason == INVALID


def test_item_length_beyond_the_bytes_present() -> None:
    data = bytearray(GOLDEN_RQ)
    data[74 + 2 : 74 + 4] = b"\xff\xff"  # Application Context Item-length 65535
    assert refusal(bytes(data)).abort_reason == INVALID


def test_truncated_item_header() -> None:
    body = GOLDEN_RQ[6:] + b"\x50\x00"
    assert refusal(with_body(0x01, body)).abort_reason == INVALID


def test_sub_item_beyond_its_parent() -> None:
    # The abstract syntax sub-item claims 40 bytes: past its context item, though the
    # PDU holds enough bytes after it.
    data = bytearray(GOLDEN_RQ)
    abstract_syntax_length = 74 + 25 + 4 + 4 + 2
    data[abstract_syntax_length : abstract_syntax_length + 2] = b"\x00\x28"
    assert refusal(bytes(data)).abort_reason == INVALID


@pytest.mark.parametrize(
    "item",
    [
        b"\x51\x00\x00\x02\x00\x00",  # Maximum Length with 2 bytes
        b"\x53\x00\x00\x02\x00\x01",  # Async window with 2 bytes
        b"\x54\x00\x00\x04\x00\x10ab",  # Role Selection UID-length past the item
        b"\x54\x00\x00\x03\x00\x01a",  # Role Selection without its role bytes
        b"\x56\x00\x00\x01\x00",  # SOP Class Extended without a full UID-length
        b"\x57\x00\x00\x05\x00\x01a\x00\x09",  # Common Extended service UID past the item
        b"\x57\x00\x00\x08\x00\x00\x00\x00\x00\x05\x00\x09",  # related list past the item
        b"\x58\x00\x00\x05\x01\x00\x00\x09a",  # primary field past the item
        b"\x58\x00\x00\x01\x01",  # User Identity shorter than its fixed fields
        b"\x59\x00\x00\x03\x00\x05a",  # server response past the item
        b"\x52\x00\x00\x09\x31",  # sub-item past its User Information item
    ],
)
def test_malformed_user_info_sub_items(item: bytes) -> None:
    assert refusal(rq_with_user_info(item)).abort_reason == INVALID


def test_non_ascii_text_is_refused() -> None:
    data = bytearray(GOLDEN_RQ)
    data[10:13] = "é".encode("latin-1") + b"AB"
    assert refusal(bytes(data)).abort_reason == INVALID
    data = bytearray(GOLDEN_RQ)
    data[26] = 0xC3  # calling AE title
    assert refusal(bytes(data)).abort_reason == INVALID
    assert refusal(rq_with_user_info(b"\x52\x00\x00\x02\xc3\xa9")).abort_reason == INVALID


def test_ac_ae_title_fields_are_reserved_and_not_tested() -> None:
    data = bytearray(GOLDEN_AC)
    data[10] = 0xC3
    assert isinstance(decode_pdu(bytes(data)), AssociateAC)


def test_misplaced_known_items_are_unexpected_parameters() -> None:
    ac_context = b"\x21\x00\x00\x08\x01\x00\x00\x00\x40\x00\x00\x00"
    assert refusal(with_body(0x01, GOLDEN_RQ[6:] + ac_context)).abort_reason == UNEXPECTED
    rq_context = GOLDEN_RQ[6 + 68 + 25 : 6 + 68 + 25 + 50]
    assert refusal(with_body(0x02, GOLDEN_AC[6:] + rq_context)).abort_reason == UNEXPECTED
    stray_sub_item = b"\x40\x00\x00\x01\x31"
    assert refusal(with_body(0x01, GOLDEN_RQ[6:] + stray_sub_item)).abort_reason == UNEXPECTED
    second_user_info = b"\x50\x00\x00\x00"
    assert refusal(with_body(0x01, GOLDEN_RQ[6:] + second_user_info)).abort_reason == UNEXPECTED
    second_app_context = b"\x10\x00\x00\x01\x31"
    assert refusal(with_body(0x01, GOLDEN_RQ[6:] + second_app_context)).abort_reason == UNEXPECTED


def test_presentation_context_structure_errors() -> None:
    prefix = b"".join(RQ_BEFORE_USER_INFO[:9])
    no_abstract = b"\x20\x00\x00\x19\x01\x00\x00\x00" + b"\x40\x00\x00\x11" + b"1.2.840.10008.1.2"
    assert refusal(with_body(0x01, prefix + no_abstract)).abort_reason == INVALID
    two_abstract = b"\x20\x00\x00\x0e\x01\x00\x00\x00" + b"\x30\x00\x00\x01\x31" * 2
    assert refusal(with_body(0x01, prefix + two_abstract)).abort_reason == UNEXPECTED
    short = b"\x20\x00\x00\x02\x01\x00"
    assert refusal(with_body(0x01, prefix + short)).abort_reason == INVALID
    ac_prefix = GOLDEN_AC[6 : 6 + 68 + 25]
    accepted_without_ts = b"\x21\x00\x00\x04\x01\x00\x00\x00"
    assert refusal(with_body(0x02, ac_prefix + accepted_without_ts)).abort_reason == INVALID
    two_ts = b"\x21\x00\x00\x0c\x01\x00\x00\x00" + b"\x40\x00\x00\x00" * 2
    assert refusal(with_body(0x02, ac_prefix + two_ts)).abort_reason == UNEXPECTED
    assert refusal(with_body(0x02, ac_prefix + b"\x21\x00\x00\x00")).abort_reason == INVALID


@pytest.mark.parametrize("pdu_type", [0x03, 0x05, 0x06, 0x07])
@pytest.mark.parametrize("length", [0, 3, 5])
def test_fixed_length_pdus_must_have_length_4(pdu_type: int, length: int) -> None:
    assert refusal(with_body(pdu_type, bytes(length))).abort_reason == INVALID


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no PDV item at all
        bytes.fromhex("000000000100"),  # Item-length 0
        bytes.fromhex("000000010100"),  # Item-length 1
        bytes.fromhex("000000050100aabb"),  # Item-length beyond the PDU
        bytes.fromhex("0000000201000000"),  # trailing bytes too few for a PDV
    ],
    ids=["empty", "length0", "length1", "beyond", "trailing"],
)
def test_malformed_pdata(body: bytes) -> None:
    assert refusal(with_body(0x04, body)).abort_reason == INVALID


# --- Encoding refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        AssociateRQ("A" * 17, "ECHOSCU", VALUE_RQ.presentation_contexts),
        AssociateRQ("ANY-SCP", "ÉCHO", VALUE_RQ.presentation_contexts),
        AssociateRQ("ANY-SCP", "ECHOSCU", (PresentationContextRQ(1, "1.2.é", ()),)),
        AssociateRQ("ANY-SCP", "ECHOSCU", (PresentationContextRQ(256, VERIFICATION, ()),)),
        AssociateRQ("ANY-SCP", "ECHOSCU", (), (UnknownUserItem(0x70, bytes(70_000)),)),
        AssociateRQ("ANY-SCP", "ECHOSCU", (), (MaximumLength(2**32),)),
        AssociateRQ("ANY-SCP", "ECHOSCU", (), (UserIdentityRQ(1, True, bytes(65_536)),)),
        AssociateRJ(1, 1, 256),
        Abort(-1, 0),
        PDataTF((PresentationDataValue(1, 0x100, b""),)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_that_cannot_be_sent_raise_local_errors(value: PDU) -> None:
    with pytest.raises(LocalProtocolError):
        encode_pdu(value)


def test_encode_refuses_what_is_not_a_pdu() -> None:
    with pytest.raises(LocalProtocolError):
        encode_pdu(MaximumLength(1))  # type: ignore[arg-type]


# --- Round trips ------------------------------------------------------------------------------

ae_titles = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16
).map(lambda title: title.rstrip(" "))
uids = st.text(alphabet="0123456789.", max_size=64)
byte_values = st.integers(0, 0xFF)
short_fields = st.binary(max_size=64)

user_items: st.SearchStrategy[UserItem] = st.one_of(
    st.builds(MaximumLength, st.integers(0, 2**32 - 1)),
    st.builds(ImplementationClassUID, uids),
    st.builds(AsynchronousOperationsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(RoleSelection, uids, st.booleans(), st.booleans()),
    st.builds(ImplementationVersionName, st.text(alphabet=st.characters(max_codepoint=0x7F))),
    st.builds(SOPClassExtendedNegotiation, uids, short_fields),
    st.builds(SOPClassCommonExtendedNegotiation, uids, uids, st.lists(uids, max_size=4).map(tuple)),
    st.builds(UserIdentityRQ, byte_values, st.booleans(), short_fields, short_fields),
    st.builds(UserIdentityAC, short_fields),
    st.builds(
        UnknownUserItem,
        byte_values.filter(lambda t: not 0x51 <= t <= 0x59),
        short_fields,
    ),
)
protocol_versions = st.integers(0, 0x7FFF).map(lambda v: 2 * v + 1)
user_item_lists = st.lists(user_items, max_size=6).map(tuple)

associate_rqs = st.builds(
    AssociateRQ,
    called_ae_title=ae_titles,
    calling_ae_title=ae_titles,
    presentation_contexts=st.lists(
        st.builds(PresentationContextRQ, byte_values, uids, st.lists(uids, max_size=4).map(tuple)),
        max_size=5,
    ).map(tuple),
    user_items=user_item_lists,
    application_context_name=uids,
    protocol_version=protocol_versions,
)
associate_acs = st.builds(
    AssociateAC,
    called_ae_title=ae_titles,
    calling_ae_title=ae_titles,
    presentation_contexts=st.lists(
        st.one_of(
            st.builds(PresentationContextAC, byte_values, st.just(0), uids.filter(bool)),
            st.builds(PresentationContextAC, byte_values, st.integers(1, 0xFF), uids),
        ),
        max_size=5,
    ).map(tuple),
    user_items=user_item_lists,
    application_context_name=uids,
    protocol_version=protocol_versions,
)
presentation_data_values = st.builds(
    PresentationDataValue, byte_values, byte_values, st.binary(max_size=300)
)
pdata_tfs = st.builds(
    PDataTF, st.lists(presentation_data_values, min_size=1, max_size=4).map(tuple)
)
pdus: st.SearchStrategy[PDU] = st.one_of(
    associate_rqs,
    associate_acs,
    st.builds(AssociateRJ, byte_values, byte_values, byte_values),
    pdata_tfs,
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    st.builds(Abort, byte_values, byte_values),
)


@given(pdus)
def test_round_trip(value: PDU) -> None:
    encoded = encode_pdu(value)
    assert int.from_bytes(encoded[2:6], "big") == len(encoded) - 6
    assert decode_pdu(encoded) == value


@given(st.one_of(associate_rqs, associate_acs, pdata_tfs), st.data())
def test_any_truncation_is_refused(value: PDU, data: st.DataObject) -> None:
    encoded = encode_pdu(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(RemoteProtocolError):
        decode_pdu(encoded[:cut])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_remote_errors_only(data: bytes) -> None:
    for candidate in (data, bytes((data[0] % 7 + 1,)) + data[1:] if data else data):
        with contextlib.suppress(RemoteProtocolError):
            decode_pdu(candidate)

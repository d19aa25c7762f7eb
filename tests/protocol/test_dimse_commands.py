"""DIMSE command sets: golden bytes from PS3.7, round trips, and independent decoders."""

from __future__ import annotations

import contextlib
import string
from io import BytesIO

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydicom.filereader import read_dataset

from aiodicom.protocol.codes import AbortReason
from aiodicom.protocol.dimse import (
    MAX_COMMAND_SET_LENGTH,
    CEchoRQ,
    CEchoRSP,
    CommandField,
    CStoreRQ,
    CStoreRSP,
    DimseCommand,
    DimseDecodeError,
    OtherCommand,
    Priority,
    Status,
    decode_command,
    encode_command,
    status_category,
)
from aiodicom.protocol.errors import RemoteProtocolError
from support import need_module

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def element(tag_element: int, value: bytes) -> bytes:
    """An Implicit VR LE group 0000 element, written out independently of the codec."""
    return (
        b"\x00\x00" + tag_element.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value
    )


# --- Golden bytes, worked out by hand from PS3.7 Tables 9.3-1, 9.3-2, 9.3-12, 9.3-13 -------

# C-ECHO-RQ, Message ID 1.
C_ECHO_RQ_BYTES = bytes.fromhex(
    "0000 0000 04000000 38000000"  # (0000,0000) UL 4: 56 bytes follow
    "0000 0200 12000000"  # (0000,0002) UI 18: "1.2.840.10008.1.1" + NUL pad
    "312e322e3834302e31303030382e312e3100"
    "0000 0001 02000000 3000"  # (0000,0100) US 2: 0x0030 C-ECHO-RQ
    "0000 1001 02000000 0100"  # (0000,0110) US 2: Message ID 1
    "0000 0008 02000000 0101"  # (0000,0800) US 2: 0x0101, no data set
)

# C-ECHO-RSP answering Message ID 1, Success.
C_ECHO_RSP_BYTES = bytes.fromhex(
    "0000 0000 04000000 42000000"  # (0000,0000) UL 4: 66 bytes follow
    "0000 0200 12000000"  # (0000,0002) UI 18: Verification SOP Class + NUL
    "312e322e3834302e31303030382e312e3100"
    "0000 0001 02000000 3080"  # (0000,0100) US 2: 0x8030 C-ECHO-RSP
    "0000 2001 02000000 0100"  # (0000,0120) US 2: responding to 1
    "0000 0008 02000000 0101"  # (0000,0800) US 2: no data set
    "0000 0009 02000000 0000"  # (0000,0900) US 2: status 0x0000 success
)

# C-STORE-RQ, Message ID 5, CT Image Storage, instance 1.2.3.4, medium priority, sent as a
# C-MOVE sub-operation for AE "MOVESCU" message 9.
C_STORE_RQ_BYTES = bytes.fromhex(
    "0000 0000 04000000 74000000"  # (0000,0000) UL 4: 116 bytes follow
    "0000 0200 1a000000"  # (0000,0002) UI 26: 25-char CT Image Storage UID + NUL
    "312e322e3834302e31303030382e352e312e342e312e312e3200"
    "0000 0001 02000000 0100"  # (0000,0100) US 2: 0x0001 C-STORE-RQ
    "0000 1001 02000000 0500"  # (0000,0110) US 2: Message ID 5
    "0000 0007 02000000 0000"  # (0000,0700) US 2: priority MEDIUM
    "0000 0008 02000000 0000"  # (0000,0800) US 2: 0x0000, a data set follows
    "0000 0010 08000000"  # (0000,1000) UI 8: "1.2.3.4" + NUL
    "312e322e332e3400"
    "0000 3010 08000000"  # (0000,1030) AE 8: "MOVESCU" + space
    "4d4f564553435520"
    "0000 3110 02000000 0900"  # (0000,1031) US 2: move originator message 9
)

# C-STORE-RSP answering Message ID 5 with warning B000, offending (0010,0010), a comment.
C_STORE_RSP_BYTES = bytes.fromhex(
    "0000 0000 04000000 76000000"  # (0000,0000) UL 4: 118 bytes follow
    "0000 0200 1a000000"  # (0000,0002) UI 26: CT Image Storage + NUL
    "312e322e3834302e31303030382e352e312e342e312e312e3200"
    "0000 0001 02000000 0180"  # (0000,0100) US 2: 0x8001 C-STORE-RSP
    "0000 2001 02000000 0500"  # (0000,0120) US 2: responding to 5
    "0000 0008 02000000 0101"  # (0000,0800) US 2: no data set
    "0000 0009 02000000 00b0"  # (0000,0900) US 2: 0xB000 coercion of data elements
    "0000 0109 04000000 10001000"  # (0000,0901) AT 4: (0010,0010)
    "0000 0209 08000000"  # (0000,0902) LO 8: "Coerced" + space
    "436f657263656420"
    "0000 0010 08000000"  # (0000,1000) UI 8: "1.2.3.4" + NUL
    "312e322e332e3400"
)

GOLDEN: list[tuple[DimseCommand, bytes]] = [
    (CEchoRQ(message_id=1), C_ECHO_RQ_BYTES),
    (CEchoRSP(message_id_being_responded_to=1, status=Status.SUCCESS), C_ECHO_RSP_BYTES),
    (
        CStoreRQ(
            message_id=5,
            affected_sop_class_uid=CT_IMAGE_STORAGE,
            affected_sop_instance_uid="1.2.3.4",
            priority=Priority.MEDIUM,
            move_originator_ae_title="MOVESCU",
            move_originator_message_id=9,
        ),
        C_STORE_RQ_BYTES,
    ),
    (
        CStoreRSP(
            message_id_being_responded_to=5,
            status=Status.COERCION_OF_DATA_ELEMENTS,
            affected_sop_class_uid=CT_IMAGE_STORAGE,
            affected_sop_instance_uid="1.2.3.4",
            error_comment="Coerced",
            offending_element=(0x00100010,),
        ),
        C_STORE_RSP_BYTES,
    ),
]


@pytest.mark.parametrize(("command", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_encode(command: DimseCommand, wire: bytes) -> None:
    assert encode_command(command) == wire


@pytest.mark.parametrize(("command", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_decode(command: DimseCommand, wire: bytes) -> None:
    assert decode_command(wire) == command
    assert decode_command(memoryview(wire)) == command


def test_command_fields_and_dataset_flags() -> None:
    echo_rq, echo_rsp, store_rq, store_rsp = (command for command, _ in GOLDEN)
    assert (echo_rq.command_field, echo_rq.has_dataset) == (0x0030, False)
    assert (echo_rsp.command_field, echo_rsp.has_dataset) == (0x8030, False)
    assert (store_rq.command_field, store_rq.has_dataset) == (0x0001, True)
    assert (store_rsp.command_field, store_rsp.has_dataset) == (0x8001, False)


# --- Independent decoders: pydicom and pynetdicom ------------------------------------------


@pytest.mark.parametrize(("command", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_pydicom_reads_the_same_fields(command: DimseCommand, wire: bytes) -> None:
    dataset = read_dataset(BytesIO(wire), is_implicit_VR=True, is_little_endian=True)
    assert dataset.CommandGroupLength == len(wire) - 12
    assert dataset.CommandField == command.command_field
    assert (dataset.CommandDataSetType != 0x0101) == command.has_dataset
    if isinstance(command, CStoreRQ):
        assert dataset.MessageID == command.message_id
        assert dataset.AffectedSOPClassUID == command.affected_sop_class_uid
        assert dataset.AffectedSOPInstanceUID == command.affected_sop_instance_uid
        assert dataset.Priority == command.priority
        assert dataset.MoveOriginatorApplicationEntityTitle == command.move_originator_ae_title
        assert dataset.MoveOriginatorMessageID == command.move_originator_message_id
    elif isinstance(command, CStoreRSP):
        assert dataset.MessageIDBeingRespondedTo == command.message_id_being_responded_to
        assert dataset.Status == command.status
        assert dataset.ErrorComment == command.error_comment
        assert dataset.OffendingElement == command.offending_element[0]  # type: ignore[index]
        assert dataset.AffectedSOPInstanceUID == command.affected_sop_instance_uid
    elif isinstance(command, CEchoRQ):
        assert dataset.MessageID == command.message_id
        assert dataset.AffectedSOPClassUID == command.affected_sop_class_uid
    elif isinstance(command, CEchoRSP):
        assert dataset.MessageIDBeingRespondedTo == command.message_id_being_responded_to
        assert dataset.Status == command.status


def _pynetdicom_command_bytes(message: object, max_pdu_length: int = 16382) -> bytes:
    """The command set bytes pynetdicom puts in its PDVs for ``message``."""
    command = b""
    for primitive in message.encode_msg(1, max_pdu_length):  # type: ignore[attr-defined]
        for _context_id, value in primitive.presentation_data_value_list:
            if value[0] & 0x01:
                command += value[1:]
    return command


def test_pynetdicom_c_store_rq_decodes_to_the_same_fields() -> None:
    pynetdicom = need_module("pynetdicom")
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE

    primitive = C_STORE()
    primitive.MessageID = 4321
    primitive.AffectedSOPClassUID = CT_IMAGE_STORAGE
    primitive.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1234567890123"
    primitive.Priority = 0x0002
    primitive.MoveOriginatorApplicationEntityTitle = "ORIGINATOR"
    primitive.MoveOriginatorMessageID = 77
    primitive.DataSet = BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    assert pynetdicom.__version__

    decoded = decode_command(_pynetdicom_command_bytes(message))
    assert decoded == CStoreRQ(
        message_id=4321,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid="1.2.826.0.1.3680043.8.498.1234567890123",
        priority=Priority.LOW,
        move_originator_ae_title="ORIGINATOR",
        move_originator_message_id=77,
    )


def test_pynetdicom_reads_our_c_store_rsp() -> None:
    need_module("pynetdicom")
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.pdu_primitives import P_DATA

    ours = CStoreRSP(
        message_id_being_responded_to=4321,
        status=Status.OUT_OF_RESOURCES,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid="1.2.3.4.5",
        error_comment="disk full",
    )
    primitive_in = P_DATA()
    # Message control header 0x03: command, last fragment (PS3.8 E.2).
    primitive_in.presentation_data_value_list = [[1, b"\x03" + encode_command(ours)]]
    message = C_STORE_RSP()
    assert message.decode_msg(primitive_in)
    theirs = message.message_to_primitive()
    assert theirs.MessageIDBeingRespondedTo == 4321
    assert theirs.Status == 0xA700
    assert theirs.AffectedSOPClassUID == CT_IMAGE_STORAGE
    assert theirs.AffectedSOPInstanceUID == "1.2.3.4.5"
    assert theirs.ErrorComment == "disk full"


def test_pynetdicom_c_echo_rq_decodes() -> None:
    need_module("pynetdicom")
    from pynetdicom.dimse_messages import C_ECHO_RQ
    from pynetdicom.dimse_primitives import C_ECHO

    primitive = C_ECHO()
    primitive.MessageID = 12
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    assert decode_command(_pynetdicom_command_bytes(message)) == CEchoRQ(message_id=12)


# --- Round trips -----------------------------------------------------------------------------

us = st.integers(0, 0xFFFF)
# Valid UIDs (PS3.5 9.1): dot-separated numbers without leading zeros, at most 64 chars.
uids = (
    st.lists(st.integers(0, 10**12), min_size=1, max_size=8)
    .map(lambda parts: ".".join(map(str, parts)))
    .filter(lambda uid: len(uid) <= 64)
)
_TEXT = string.ascii_letters + string.digits + " -_."
ae_titles = st.text(_TEXT, min_size=1, max_size=16).filter(lambda s: s.strip() == s)
comments = st.text(_TEXT, max_size=64).filter(lambda s: s.strip() == s)
tags = st.integers(0, 0xFFFFFFFF)
_KNOWN = {CommandField.C_ECHO_RQ, CommandField.C_ECHO_RSP}
_KNOWN |= {CommandField.C_STORE_RQ, CommandField.C_STORE_RSP}

even_bytes = st.binary(max_size=80).map(lambda b: b[: len(b) & ~1])
other_commands = st.builds(
    OtherCommand,
    command_field=us.filter(lambda value: value not in _KNOWN),
    message_id=st.none() | us,
    has_dataset=st.booleans(),
    elements=st.dictionaries(
        us.filter(lambda value: value not in {0x0000, 0x0100, 0x0110, 0x0800}),
        even_bytes,
        max_size=8,
    ),
)

commands = st.one_of(
    st.builds(CEchoRQ, message_id=us, affected_sop_class_uid=uids),
    st.builds(
        CEchoRSP,
        message_id_being_responded_to=us,
        status=us,
        affected_sop_class_uid=st.none() | uids,
        error_comment=st.none() | comments,
    ),
    st.builds(
        CStoreRQ,
        message_id=us,
        affected_sop_class_uid=uids,
        affected_sop_instance_uid=uids,
        priority=us,
        move_originator_ae_title=st.none() | ae_titles,
        move_originator_message_id=st.none() | us,
    ),
    st.builds(
        CStoreRSP,
        message_id_being_responded_to=us,
        status=us,
        affected_sop_class_uid=st.none() | uids,
        affected_sop_instance_uid=st.none() | uids,
        error_comment=st.none() | comments,
        offending_element=st.none() | st.lists(tags, max_size=4).map(tuple),
    ),
    other_commands,
)


@given(commands)
def test_round_trip(command: DimseCommand) -> None:
    wire = encode_command(command)
    assert len(wire) % 2 == 0
    assert int.from_bytes(wire[8:12], "little") == len(wire) - 12
    assert decode_command(wire) == command


# pydicom warns about group 0000 elements it has no dictionary entry for (OtherCommand).
@pytest.mark.filterwarnings("ignore:VR lookup failed:UserWarning")
@given(commands)
@example(OtherCommand(0x0000, None, False, {0x0001: b"\x00\x00"}))
def test_pydicom_agrees_on_every_round_trip(command: DimseCommand) -> None:
    wire = encode_command(command)
    dataset = read_dataset(BytesIO(wire), is_implicit_VR=True, is_little_endian=True)
    # keys() keeps the order pydicom read the elements in (iterating a Dataset sorts them,
    # and would also convert every value: arbitrary OtherCommand bytes need not fit the
    # dictionary VR of a retired tag such as (0000,0001) UL).
    tags_in_order = [int(tag) for tag in dataset.keys()]  # noqa: SIM118 (see above)
    assert tags_in_order == sorted(tags_in_order)
    assert dataset.CommandField == command.command_field
    assert (dataset.CommandDataSetType != 0x0101) == command.has_dataset


def test_unknown_elements_are_skipped() -> None:
    # (0000,0001) Command Length to End is retired; (0000,0903) Error ID is not modelled.
    body = (
        element(0x0001, b"\x00\x00\x00\x00")
        + element(0x0002, b"1.2.840.10008.1.1\x00")
        + element(0x0100, b"\x30\x80")
        + element(0x0120, b"\x07\x00")
        + element(0x0800, b"\x01\x01")
        + element(0x0900, b"\x10\x01")
        + element(0x0903, b"\x2a\x00")
    )
    wire = element(0x0000, len(body).to_bytes(4, "little")) + body
    assert decode_command(wire) == CEchoRSP(7, Status.PROCESSING_FAILURE)


def test_padding_variants_are_stripped() -> None:
    # Some peers pad UIDs with a space, AE titles with leading spaces.
    body = (
        element(0x0002, b"1.2.3 ")
        + element(0x0100, b"\x01\x00")
        + element(0x0110, b"\x01\x00")
        + element(0x0700, b"\x01\x00")
        + element(0x0800, b"\x02\x01")
        + element(0x1000, b"1.2.3.4\x00")
        + element(0x1030, b"  AE")
    )
    wire = element(0x0000, len(body).to_bytes(4, "little")) + body
    decoded = decode_command(wire)
    assert decoded == CStoreRQ(1, "1.2.3", "1.2.3.4", Priority.HIGH, "AE")


def test_other_command_keeps_its_elements() -> None:
    # A C-FIND-RQ: decoded raw, so that the SCP can answer 0x0211 instead of aborting.
    body = (
        element(0x0002, b"1.2.840.10008.5.1.4.1.2.2.1\x00")
        + element(0x0100, b"\x20\x00")
        + element(0x0110, b"\x03\x00")
        + element(0x0700, b"\x00\x00")
        + element(0x0800, b"\x00\x00")
    )
    wire = element(0x0000, len(body).to_bytes(4, "little")) + body
    decoded = decode_command(wire)
    assert isinstance(decoded, OtherCommand)
    assert decoded.command_field == CommandField.C_FIND_RQ
    assert decoded.message_id == 3
    assert decoded.has_dataset
    assert decoded.elements == {
        0x0002: b"1.2.840.10008.5.1.4.1.2.2.1\x00",
        0x0700: b"\x00\x00",
    }
    assert encode_command(decoded) == wire


# --- Malformed command sets ------------------------------------------------------------------


def _with_group_length(body: bytes) -> bytes:
    return element(0x0000, len(body).to_bytes(4, "little")) + body


ECHO_BODY = C_ECHO_RQ_BYTES[12:]

MALFORMED = {
    "empty": b"",
    "no group length": ECHO_BODY,
    "group length too big": C_ECHO_RQ_BYTES[:8] + b"\x39\x00\x00\x00" + ECHO_BODY,
    "group length too small": C_ECHO_RQ_BYTES[:8] + b"\x30\x00\x00\x00" + ECHO_BODY,
    "group length not UL": element(0x0000, b"\x38\x00") + ECHO_BODY,
    "truncated header": _with_group_length(ECHO_BODY + b"\x00\x00\x00\x09"),
    "truncated value": _with_group_length(ECHO_BODY + b"\x00\x00\x00\x09\x08\x00\x00\x00ab"),
    "non-command group": _with_group_length(ECHO_BODY + b"\x08\x00\x16\x00\x00\x00\x00\x00"),
    "out of order": _with_group_length(ECHO_BODY[26:] + ECHO_BODY[:26]),
    "duplicate element": _with_group_length(ECHO_BODY + ECHO_BODY[-10:]),
    "missing command field": _with_group_length(ECHO_BODY[:26] + ECHO_BODY[36:]),
    "missing data set type": _with_group_length(ECHO_BODY[:-10]),
    "missing message id": _with_group_length(ECHO_BODY[:36] + ECHO_BODY[46:]),
    "US of wrong length": _with_group_length(ECHO_BODY[:46] + element(0x0800, b"\x01\x01\x00\x00")),
    "C-STORE-RQ without data set": _with_group_length(
        C_STORE_RQ_BYTES[12:76] + element(0x0800, b"\x01\x01") + C_STORE_RQ_BYTES[86:]
    ),
    "C-ECHO-RQ with data set": _with_group_length(ECHO_BODY[:46] + element(0x0800, b"\x00\x00")),
    "C-STORE-RSP with data set": _with_group_length(
        C_STORE_RSP_BYTES[12:66] + element(0x0800, b"\x00\x00") + C_STORE_RSP_BYTES[76:]
    ),
    "AT of wrong length": _with_group_length(
        C_STORE_RSP_BYTES[12:86] + element(0x0901, b"\x10\x00") + C_STORE_RSP_BYTES[98:]
    ),
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_command_sets_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(DimseDecodeError) as caught:
        decode_command(wire)
    assert isinstance(caught.value, RemoteProtocolError)
    assert caught.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_malformed_samples_differ_from_valid_only_where_intended() -> None:
    # Guard the slicing above: the unmodified pieces still decode.
    assert decode_command(_with_group_length(ECHO_BODY)) == CEchoRQ(1)
    assert decode_command(_with_group_length(C_STORE_RQ_BYTES[12:])) == GOLDEN[2][0]


@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_exception(data: bytes) -> None:
    with contextlib.suppress(DimseDecodeError):
        decode_command(data)


@given(commands, st.data())
def test_truncations_and_bit_flips_fail_cleanly(command: DimseCommand, data: st.DataObject) -> None:
    wire = bytearray(encode_command(command))
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(DimseDecodeError):
        decode_command(wire[:cut])
    position = data.draw(st.integers(0, len(wire) - 1))
    wire[position] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(DimseDecodeError):
        decode_command(wire)


# --- Validation, statuses ------------------------------------------------------------------


def test_values_are_validated_on_construction() -> None:
    with pytest.raises(ValueError):
        CEchoRQ(message_id=0x10000)
    with pytest.raises(ValueError):
        CStoreRSP(1, -1, None, None)
    with pytest.raises(ValueError):
        CStoreRSP(1, 0, None, None, offending_element=(1 << 32,))
    with pytest.raises(ValueError):
        OtherCommand(0x0020, 1, True, {0x0110: b"\x01\x00"})


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (0x0000, "success"),
        (0x0001, "warning"),
        (0x0107, "warning"),
        (0x0116, "warning"),
        (0xB000, "warning"),
        (0xB007, "warning"),
        (0xBFFF, "warning"),
        (0xFE00, "cancel"),
        (0xFF00, "pending"),
        (0xFF01, "pending"),
        (0xA700, "failure"),
        (0xA7FF, "failure"),
        (0xA900, "failure"),
        (0xC000, "failure"),
        (0xCFFF, "failure"),
        (0x0110, "failure"),
        (0x0122, "failure"),
        (0x0124, "failure"),
        (0x0211, "failure"),
        (0xFF02, "failure"),
    ],
)
def test_status_category(status: int, category: str) -> None:
    assert status_category(status) == category


def test_status_values_from_the_standard() -> None:
    # PS3.4 B.2.3 Table B.2-1 and PS3.7 Annex C.
    assert Status.OUT_OF_RESOURCES == 0xA700
    assert Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS == 0xA900
    assert Status.CANNOT_UNDERSTAND == 0xC000
    assert Status.SOP_CLASS_NOT_SUPPORTED == 0x0122
    assert Status.NOT_AUTHORIZED == 0x0124
    assert Status.UNRECOGNIZED_OPERATION == 0x0211
    assert len({member.value for member in Status}) == len(Status)


def test_command_set_cap_is_generous_but_bounded() -> None:
    largest_store_rq = CStoreRQ(0xFFFF, "1." * 32, "1." * 32, 0, "A" * 16, 0xFFFF)
    assert len(encode_command(largest_store_rq)) < MAX_COMMAND_SET_LENGTH <= 1024 * 1024

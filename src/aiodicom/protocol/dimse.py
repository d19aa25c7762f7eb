"""DIMSE command sets (PS3.7 section 9 and Annex E): values, encoding, decoding.

A command set is a list of group 0000 data elements, always encoded Implicit VR Little
Endian whatever transfer syntax the presentation context negotiated (PS3.7 6.3.1), and
always starting with Command Group Length (0000,0000) UL, whose value is the byte length
of every element after it (PS3.7 E.1). Each element is ``group (2) | element (2) |
value length (4) | value``, all little endian.

The four commands a Storage SCP/SCU needs are modelled one frozen dataclass each
(:class:`CEchoRQ`, :class:`CEchoRSP`, :class:`CStoreRQ`, :class:`CStoreRSP`); every other
command decodes to :class:`OtherCommand`, so that an SCP can answer "unrecognized
operation" (0x0211) rather than abort. Text fields hold values without their padding.

The codec is written by hand with :mod:`struct` (not through pydicom): it runs once per
message on the receive path and decodes a C-STORE-RQ in a few microseconds.

Decoding errors raise :class:`DimseDecodeError`, a :class:`RemoteProtocolError` whose
A-ABORT reason is "invalid PDU parameter value" (PS3.8 9.3.8, reason 6): the command set
travels as the value of PDV items, and a malformed one is a bad value of that parameter.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from .codes import AbortReason
from .errors import RemoteProtocolError

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

# PS3.7 E.1: Command Data Set Type 0x0101 means "no data set"; any other value means one
# follows. We send 0x0000 when there is one.
NO_DATASET = 0x0101
DATASET_PRESENT = 0x0000

# No standard command set comes near this: the longest carry a handful of UIDs, an AE
# title and a 64-character comment. The assembler refuses to buffer more.
MAX_COMMAND_SET_LENGTH = 64 * 1024


class CommandField(IntEnum):
    """Command Field (0000,0100) values, PS3.7 E.1 (Table E.1-1)."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


class Priority(IntEnum):
    """Priority (0000,0700), PS3.7 9.3.1.1 Table 9.3-1."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


class Status(IntEnum):
    """Status (0000,0900) values: the general ones of PS3.7 Annex C and C-STORE's
    own of PS3.4 B.2.3 (Table B.2-1).

    The C-STORE failure codes are ranges (A7xx, A9xx, Cxxx): the members here are the
    first value of each range; compare with :func:`status_category` or a mask.
    """

    SUCCESS = 0x0000
    # Warnings (PS3.7 C.4; PS3.4 B.2.3).
    OPTIONAL_ATTRIBUTES_NOT_SUPPORTED = 0x0001
    ATTRIBUTE_LIST_ERROR = 0x0107
    ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007
    # Failures (PS3.7 C.5).
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    NO_SUCH_EVENT_TYPE = 0x0113
    NO_SUCH_ARGUMENT = 0x0114
    INVALID_ARGUMENT_VALUE = 0x0115
    INVALID_SOP_INSTANCE = 0x0117
    NO_SUCH_SOP_CLASS = 0x0118
    CLASS_INSTANCE_CONFLICT = 0x0119
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NO_SUCH_ACTION = 0x0123
    NOT_AUTHORIZED = 0x0124
    DUPLICATE_INVOCATION = 0x0210
    UNRECOGNIZED_OPERATION = 0x0211
    MISTYPED_ARGUMENT = 0x0212
    RESOURCE_LIMITATION = 0x0213
    # C-STORE failures (PS3.4 B.2.3), first value of each range.
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    # PS3.7 C.3 and C.2.
    CANCEL = 0xFE00
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01


# PS3.7 Annex C: the status classes.
_WARNING_CODES = frozenset({0x0001, 0x0107, 0x0116})


def status_category(status: int) -> str:
    """The status class of a Status value (PS3.7 Annex C).

    Returns ``"success"``, ``"warning"``, ``"failure"``, ``"cancel"`` or ``"pending"``.
    Success is 0000; warning 0001, 0107, 0116 or Bxxx; cancel FE00; pending FF00/FF01;
    everything else (Axxx, Cxxx, 01xx, 02xx and unlisted values) counts as failure.
    """
    if status == 0x0000:
        return "success"
    if status in _WARNING_CODES or status & 0xF000 == 0xB000:
        return "warning"
    if status == 0xFE00:
        return "cancel"
    if status == 0xFF00 or status == 0xFF01:
        return "pending"
    return "failure"


class DimseDecodeError(RemoteProtocolError):
    """The peer sent a command set that cannot be decoded (A-ABORT reason 6)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE)


# --- The commands --------------------------------------------------------------------------


def _check_us(name: str, value: int | None) -> None:
    # Every integer field of these commands is a US: 16 bits unsigned (PS3.5 6.2).
    if value is not None and not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must fit in 16 bits (US), got {value!r}")


@dataclass(frozen=True, slots=True)
class CEchoRQ:
    """C-ECHO-RQ (PS3.7 9.3.5.1, Table 9.3-12). Never has a data set."""

    command_field: ClassVar[int] = CommandField.C_ECHO_RQ
    has_dataset: ClassVar[bool] = False

    message_id: int
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS

    def __post_init__(self) -> None:
        _check_us("message_id", self.message_id)


@dataclass(frozen=True, slots=True)
class CEchoRSP:
    """C-ECHO-RSP (PS3.7 9.3.5.2, Table 9.3-13; Error Comment from Annex C)."""

    command_field: ClassVar[int] = CommandField.C_ECHO_RSP
    has_dataset: ClassVar[bool] = False

    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = VERIFICATION_SOP_CLASS
    error_comment: str | None = None

    def __post_init__(self) -> None:
        _check_us("message_id_being_responded_to", self.message_id_being_responded_to)
        _check_us("status", self.status)


@dataclass(frozen=True, slots=True)
class CStoreRQ:
    """C-STORE-RQ (PS3.7 9.3.1.1, Table 9.3-1). Always followed by a data set."""

    command_field: ClassVar[int] = CommandField.C_STORE_RQ
    has_dataset: ClassVar[bool] = True

    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: int = Priority.MEDIUM
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None

    def __post_init__(self) -> None:
        _check_us("message_id", self.message_id)
        _check_us("priority", self.priority)
        _check_us("move_originator_message_id", self.move_originator_message_id)


@dataclass(frozen=True, slots=True)
class CStoreRSP:
    """C-STORE-RSP (PS3.7 9.3.1.2, Table 9.3-2; Offending Element and Error Comment
    from Annex C). ``offending_element`` holds tags as ``group << 16 | element``."""

    command_field: ClassVar[int] = CommandField.C_STORE_RSP
    has_dataset: ClassVar[bool] = False

    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None
    affected_sop_instance_uid: str | None
    error_comment: str | None = None
    offending_element: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_us("message_id_being_responded_to", self.message_id_being_responded_to)
        _check_us("status", self.status)
        for tag in self.offending_element or ():
            if not 0 <= tag <= 0xFFFFFFFF:
                raise ValueError(f"offending_element tag out of range: {tag!r}")


# The elements OtherCommand carries in its own fields rather than in ``elements``.
_STRUCTURAL_ELEMENTS = frozenset({0x0000, 0x0100, 0x0110, 0x0800})


@dataclass(frozen=True, slots=True)
class OtherCommand:
    """Any command but the four above, kept raw so that it can be answered.

    ``elements`` maps the element number (the group is always 0000) to the raw value
    bytes, padding included, for every element except Command Group Length, Command
    Field, Message ID and Command Data Set Type, which are the fields.
    ``message_id`` is Message ID (0000,0110) when present (responses and C-CANCEL-RQ
    carry Message ID Being Responded To (0000,0120) instead, left in ``elements``).
    On encoding, a present data set is announced with Command Data Set Type 0x0000.
    """

    command_field: int
    message_id: int | None
    has_dataset: bool
    elements: Mapping[int, bytes] = field(hash=False)

    def __post_init__(self) -> None:
        _check_us("command_field", self.command_field)
        _check_us("message_id", self.message_id)
        for element in self.elements:
            if element in _STRUCTURAL_ELEMENTS or not 0 <= element <= 0xFFFF:
                raise ValueError(f"element (0000,{element:04X}) cannot be in elements")


DimseCommand = CEchoRQ | CEchoRSP | CStoreRQ | CStoreRSP | OtherCommand


# --- Encoding --------------------------------------------------------------------------------

_ELEMENT_HEADER = struct.Struct("<HHI")
# A whole US element: group 0000, element, length 2, value.
_US_ELEMENT = struct.Struct("<HHIH")
_TAG = struct.Struct("<HH")


def _us(element: int, value: int) -> bytes:
    return _US_ELEMENT.pack(0, element, 2, value)


def _uid(element: int, value: str) -> bytes:
    # PS3.5 6.2 (UI): padded to even length with a single trailing NUL.
    raw = value.encode("ascii")
    if len(raw) & 1:
        raw += b"\x00"
    return _ELEMENT_HEADER.pack(0, element, len(raw)) + raw


def _text(element: int, value: str) -> bytes:
    # PS3.5 6.2 (AE, LO): padded to even length with a trailing space.
    raw = value.encode("ascii")
    if len(raw) & 1:
        raw += b" "
    return _ELEMENT_HEADER.pack(0, element, len(raw)) + raw


def _raw(element: int, value: bytes) -> bytes:
    if len(value) & 1:
        # PS3.5 7.1.1: value lengths are even; a NUL keeps the bytes we were given.
        value += b"\x00"
    return _ELEMENT_HEADER.pack(0, element, len(value)) + value


def _encode_elements(parts: list[bytes]) -> bytes:
    body = b"".join(parts)
    # PS3.7 E.1: Command Group Length first, counting every byte after its own element.
    return _ELEMENT_HEADER.pack(0, 0x0000, 4) + len(body).to_bytes(4, "little") + body


def encode_command(command: DimseCommand) -> bytes:
    """The command set of ``command``, Implicit VR Little Endian, ascending tag order."""
    parts: list[bytes] = []
    if isinstance(command, CStoreRQ):
        parts.append(_uid(0x0002, command.affected_sop_class_uid))
        parts.append(_us(0x0100, CommandField.C_STORE_RQ))
        parts.append(_us(0x0110, command.message_id))
        parts.append(_us(0x0700, command.priority))
        parts.append(_us(0x0800, DATASET_PRESENT))
        parts.append(_uid(0x1000, command.affected_sop_instance_uid))
        if command.move_originator_ae_title is not None:
            parts.append(_text(0x1030, command.move_originator_ae_title))
        if command.move_originator_message_id is not None:
            parts.append(_us(0x1031, command.move_originator_message_id))
    elif isinstance(command, CStoreRSP):
        if command.affected_sop_class_uid is not None:
            parts.append(_uid(0x0002, command.affected_sop_class_uid))
        parts.append(_us(0x0100, CommandField.C_STORE_RSP))
        parts.append(_us(0x0120, command.message_id_being_responded_to))
        parts.append(_us(0x0800, NO_DATASET))
        parts.append(_us(0x0900, command.status))
        if command.offending_element is not None:
            tags = b"".join(_TAG.pack(t >> 16, t & 0xFFFF) for t in command.offending_element)
            parts.append(_raw(0x0901, tags))
        if command.error_comment is not None:
            parts.append(_text(0x0902, command.error_comment))
        if command.affected_sop_instance_uid is not None:
            parts.append(_uid(0x1000, command.affected_sop_instance_uid))
    elif isinstance(command, CEchoRQ):
        parts.append(_uid(0x0002, command.affected_sop_class_uid))
        parts.append(_us(0x0100, CommandField.C_ECHO_RQ))
        parts.append(_us(0x0110, command.message_id))
        parts.append(_us(0x0800, NO_DATASET))
    elif isinstance(command, CEchoRSP):
        if command.affected_sop_class_uid is not None:
            parts.append(_uid(0x0002, command.affected_sop_class_uid))
        parts.append(_us(0x0100, CommandField.C_ECHO_RSP))
        parts.append(_us(0x0120, command.message_id_being_responded_to))
        parts.append(_us(0x0800, NO_DATASET))
        parts.append(_us(0x0900, command.status))
        if command.error_comment is not None:
            parts.append(_text(0x0902, command.error_comment))
    else:
        elements = dict(command.elements)
        elements[0x0100] = _us(0x0100, command.command_field)
        if command.message_id is not None:
            elements[0x0110] = _us(0x0110, command.message_id)
        dataset_type = DATASET_PRESENT if command.has_dataset else NO_DATASET
        elements[0x0800] = _us(0x0800, dataset_type)
        for element in sorted(elements):
            value = elements[element]
            parts.append(value if element in _STRUCTURAL_ELEMENTS else _raw(element, value))
    return _encode_elements(parts)


# --- Decoding --------------------------------------------------------------------------------

_GROUP_LENGTH_ELEMENT = b"\x00\x00\x00\x00\x04\x00\x00\x00"
_UNPACK_HEADER = _ELEMENT_HEADER.unpack_from


def _parse_elements(data: bytes) -> dict[int, bytes]:
    """Element number -> raw value, after checking the structure of the command set."""
    total = len(data)
    if total < 12 or data[:8] != _GROUP_LENGTH_ELEMENT:
        raise DimseDecodeError("command set does not start with Command Group Length (UL)")
    group_length = int.from_bytes(data[8:12], "little")
    if group_length != total - 12:
        raise DimseDecodeError(
            f"Command Group Length is {group_length} but {total - 12} bytes follow it"
        )
    values: dict[int, bytes] = {}
    previous = 0
    offset = 12
    while offset < total:
        if offset + 8 > total:
            raise DimseDecodeError("command set ends inside an element header")
        group, element, value_length = _UNPACK_HEADER(data, offset)
        offset += 8
        end = offset + value_length
        if end > total:
            raise DimseDecodeError(f"element (0000,{element:04X}) runs past the command set")
        # PS3.7 6.3.1 / PS3.5 7.1: only group 0000, each element once, ascending order.
        if group != 0 or element <= previous:
            raise DimseDecodeError(
                f"element ({group:04X},{element:04X}) is out of place in a command set"
            )
        values[element] = data[offset:end]
        previous = element
        offset = end
    return values


def _get_us(values: dict[int, bytes], element: int, required: bool = True) -> int | None:
    raw = values.get(element)
    if raw is None:
        if required:
            raise DimseDecodeError(f"required element (0000,{element:04X}) is missing")
        return None
    if len(raw) != 2:
        raise DimseDecodeError(f"element (0000,{element:04X}) is US but {len(raw)} bytes long")
    return raw[0] | raw[1] << 8


def _get_text(values: dict[int, bytes], element: int, required: bool = True) -> str | None:
    raw = values.get(element)
    if raw is None:
        if required:
            raise DimseDecodeError(f"required element (0000,{element:04X}) is missing")
        return None
    # Trailing NUL (UI) or space (AE, LO) padding, and leading spaces (AE, LO), are not
    # significant (PS3.5 6.2). Anything outside ASCII is a sloppy peer: it is kept
    # visible as U+FFFD rather than made fatal; the service layer validates values.
    return raw.rstrip(b"\x00 ").lstrip(b" ").decode("ascii", "replace")


def _required_text(values: dict[int, bytes], element: int) -> str:
    text = _get_text(values, element)
    assert text is not None
    return text


def _required_us(values: dict[int, bytes], element: int) -> int:
    number = _get_us(values, element)
    assert number is not None
    return number


def decode_command(data: bytes | bytearray | memoryview) -> DimseCommand:
    """Decode one whole command set; unknown elements are skipped.

    Raises :class:`DimseDecodeError` for a malformed structure, a missing required
    element, or a C-ECHO/C-STORE whose Command Data Set Type contradicts PS3.7.
    """
    raw = bytes(data)
    values = _parse_elements(raw)
    command_field = _required_us(values, 0x0100)
    dataset_type = _required_us(values, 0x0800)
    has_dataset = dataset_type != NO_DATASET

    if command_field == CommandField.C_STORE_RQ:
        if not has_dataset:
            raise DimseDecodeError("C-STORE-RQ without a data set")
        return CStoreRQ(
            message_id=_required_us(values, 0x0110),
            affected_sop_class_uid=_required_text(values, 0x0002),
            affected_sop_instance_uid=_required_text(values, 0x1000),
            priority=_required_us(values, 0x0700),
            move_originator_ae_title=_get_text(values, 0x1030, False),
            move_originator_message_id=_get_us(values, 0x1031, False),
        )
    if command_field == CommandField.C_STORE_RSP:
        if has_dataset:
            raise DimseDecodeError("C-STORE-RSP announces a data set")
        return CStoreRSP(
            message_id_being_responded_to=_required_us(values, 0x0120),
            status=_required_us(values, 0x0900),
            affected_sop_class_uid=_get_text(values, 0x0002, False),
            affected_sop_instance_uid=_get_text(values, 0x1000, False),
            error_comment=_get_text(values, 0x0902, False),
            offending_element=_get_tags(values, 0x0901),
        )
    if command_field == CommandField.C_ECHO_RQ:
        if has_dataset:
            raise DimseDecodeError("C-ECHO-RQ announces a data set")
        return CEchoRQ(
            message_id=_required_us(values, 0x0110),
            affected_sop_class_uid=_required_text(values, 0x0002),
        )
    if command_field == CommandField.C_ECHO_RSP:
        if has_dataset:
            raise DimseDecodeError("C-ECHO-RSP announces a data set")
        return CEchoRSP(
            message_id_being_responded_to=_required_us(values, 0x0120),
            status=_required_us(values, 0x0900),
            affected_sop_class_uid=_get_text(values, 0x0002, False),
            error_comment=_get_text(values, 0x0902, False),
        )
    message_id = _get_us(values, 0x0110, False)
    for element in _STRUCTURAL_ELEMENTS:
        values.pop(element, None)
    return OtherCommand(command_field, message_id, has_dataset, values)


def _get_tags(values: dict[int, bytes], element: int) -> tuple[int, ...] | None:
    raw = values.get(element)
    if raw is None:
        return None
    if len(raw) % 4:
        raise DimseDecodeError(f"element (0000,{element:04X}) is AT but {len(raw)} bytes long")
    return tuple(group << 16 | number for group, number in _TAG.iter_unpack(raw))


__all__ = [
    "DATASET_PRESENT",
    "MAX_COMMAND_SET_LENGTH",
    "NO_DATASET",
    "VERIFICATION_SOP_CLASS",
    "CEchoRQ",
    "CEchoRSP",
    "CStoreRQ",
    "CStoreRSP",
    "CommandField",
    "DimseCommand",
    "DimseDecodeError",
    "OtherCommand",
    "Priority",
    "Status",
    "decode_command",
    "encode_command",
    "status_category",
]

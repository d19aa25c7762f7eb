"""Bytes <-> PDU values for the seven Upper Layer PDUs (PS3.8 9.3, Annex D; PS3.7 D.3.3).

``encode_pdu`` turns a value of :mod:`.pdu` into bytes, ``decode_pdu`` the reverse, and
``decode_pdu(encode_pdu(x)) == x`` for every valid value. Every field is big endian
(PS3.8 9.3.1). Two small helpers write the P-DATA-TF and PDV headers alone, so that the
sending side can put a data set on the wire without copying it into a PDU.

Decoding is defensive: every declared length is checked against the bytes actually
present before anything is sliced, and malformed input raises
:class:`~.errors.RemoteProtocolError` with the A-ABORT reason PS3.8 9.3.8 prescribes.
Decisions where the standard leaves room (each one tested):

* Reserved fields are sent as zeros and never tested (PS3.8 9.3.2-9.3.8); in the AC the
  called/calling AE title fields are sent as given and decoded without testing.
* Items of an unrecognised type in an A-ASSOCIATE-RQ/AC, outside the User Information
  item, are skipped (PS3.8 9.3.1: they "shall be ignored and skipped"). A recognised
  item in the wrong place (say a 0x21 item in an RQ, a 0x40 item at the top level) is
  UNEXPECTED_PDU_PARAMETER. Unknown User Information sub-items are kept as
  :class:`~.pdu.UnknownUserItem`.
* Bytes after the last field an item defines are ignored (room for later editions);
  a field that runs past its item is INVALID_PDU_PARAMETER_VALUE.
* A missing Application Context item decodes as ``""`` and a missing User Information
  item as no user items, so that negotiation can answer with an A-ASSOCIATE-RJ rather
  than an abort; a second one of either is UNEXPECTED_PDU_PARAMETER.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from .codes import AbortReason, ContextResult, PDUType, RejectACSEReason, RejectResult, RejectSource
from .errors import LocalProtocolError, RejectAnswer, RemoteProtocolError
from .pdu import (
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

# PS3.8 9.3.1: PDU-type (1), reserved (1), PDU-length (4) excluding these 6 bytes.
PDU_HEADER = struct.Struct(">BBL")
PDU_HEADER_LENGTH = 6
# PS3.8 9.3.5.1 Table 9-23: Item-length (4), Presentation-context-ID (1), then the
# message control header (1, PS3.8 E.2) that starts the Presentation-data-value.
PDV_HEADER = struct.Struct(">LBB")
PDV_HEADER_LENGTH = 6
# Item-length of a PDV counts the context ID and message control header.
PDV_ITEM_OVERHEAD = 2

# PS3.8 Tables 9-11/9-17: protocol-version (2), reserved (2), called AE (16),
# calling AE (16), reserved (32); the variable items start at PDU byte 75.
_ASSOCIATE_FIXED = struct.Struct(">HH16s16s32s")
# PS3.8 9.3.2.1 etc.: Item-type (1), reserved (1), Item-length (2).
_ITEM_HEADER = struct.Struct(">BBH")
_ITEM_HEADER_LENGTH = 4
# PS3.8 9.3.2.2 Table 9-13: context ID (1) and three reserved bytes, the third of which
# is Result/Reason in the AC (Table 9-18).
_CONTEXT_FIXED = struct.Struct(">BBBB")
# A-ASSOCIATE-RJ (Table 9-21) and A-ABORT (Table 9-26): reserved, then three one-byte
# fields, of which A-ABORT uses the last two.
_FOUR_BYTES = struct.Struct(">BBBB")
_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">L")
_AE_TITLE_LENGTH = 16
_MAX_ITEM_LENGTH = 0xFFFF
_MAX_PDU_LENGTH = 0xFFFFFFFF

# Item types (PS3.8 9.3.2.1-9.3.3.3, Annex D; PS3.7 D.3.3).
_APPLICATION_CONTEXT = 0x10
_CONTEXT_RQ = 0x20
_CONTEXT_AC = 0x21
_ABSTRACT_SYNTAX = 0x30
_TRANSFER_SYNTAX = 0x40
_USER_INFORMATION = 0x50
_MAXIMUM_LENGTH = 0x51
_IMPLEMENTATION_CLASS_UID = 0x52
_ASYNC_OPERATIONS_WINDOW = 0x53
_ROLE_SELECTION = 0x54
_IMPLEMENTATION_VERSION_NAME = 0x55
_SOP_CLASS_EXTENDED = 0x56
_SOP_CLASS_COMMON_EXTENDED = 0x57
_USER_IDENTITY_RQ = 0x58
_USER_IDENTITY_AC = 0x59
_KNOWN_ITEM_TYPES = frozenset(
    {_APPLICATION_CONTEXT, _CONTEXT_RQ, _CONTEXT_AC, _ABSTRACT_SYNTAX, _TRANSFER_SYNTAX}
    | set(range(_USER_INFORMATION, _USER_IDENTITY_AC + 1))
)

# PS3.8 E.2: message control header bit 0 = command, bit 1 = last fragment.
_COMMAND_BIT = 0x01
_LAST_BIT = 0x02


# --- Errors ------------------------------------------------------------------------------------


def _invalid(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE)


def _unexpected(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, abort_reason=AbortReason.UNEXPECTED_PDU_PARAMETER)


# --- Encoding ----------------------------------------------------------------------------------


def encode_pdata_header(body_length: int) -> bytes:
    """The 6-byte P-DATA-TF header for a body (all PDV items) of ``body_length`` bytes."""
    if not 0 <= body_length <= _MAX_PDU_LENGTH:
        raise LocalProtocolError(f"P-DATA-TF body length {body_length} out of range")
    return PDU_HEADER.pack(PDUType.P_DATA_TF, 0, body_length)


def encode_pdv_header(context_id: int, is_command: bool, is_last: bool, data_length: int) -> bytes:
    """The 6-byte PDV item header (PS3.8 9.3.5.1) for ``data_length`` bytes of fragment."""
    if not 0 <= context_id <= 0xFF:
        raise LocalProtocolError(f"presentation context ID {context_id} out of range")
    item_length = data_length + PDV_ITEM_OVERHEAD
    if not PDV_ITEM_OVERHEAD <= item_length <= _MAX_PDU_LENGTH:
        raise LocalProtocolError(f"PDV data length {data_length} out of range")
    control = (_COMMAND_BIT if is_command else 0) | (_LAST_BIT if is_last else 0)
    return PDV_HEADER.pack(item_length, context_id, control)


def encode_pdu(pdu: PDU) -> bytes:
    """The bytes of one PDU, header included.

    Raises :class:`~.errors.LocalProtocolError` for a value that cannot be sent (an AE
    title longer than 16 characters, non-ASCII text, a number out of its field's range).
    """
    try:
        pdu_type, body = _encode_body(pdu)
    except (struct.error, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {type(pdu).__name__}: {exc}") from exc
    if len(body) > _MAX_PDU_LENGTH:
        raise LocalProtocolError("PDU longer than the 32-bit PDU-length allows")
    return PDU_HEADER.pack(pdu_type, 0, len(body)) + body


def _ascii(text: str, what: str) -> bytes:
    if not text.isascii():
        raise LocalProtocolError(f"{what} must be ASCII: {text!r}")
    return text.encode("ascii")


def _encode_ae_title(title: str, what: str) -> bytes:
    # PS3.8 Table 9-11: 16 characters of the ISO 646 basic G0 set, space padded.
    raw = _ascii(title, what)
    if len(raw) > _AE_TITLE_LENGTH:
        raise LocalProtocolError(f"{what} longer than 16 characters: {title!r}")
    return raw.ljust(_AE_TITLE_LENGTH, b" ")


def _item(item_type: int, body: bytes, second_byte: int = 0) -> bytes:
    if len(body) > _MAX_ITEM_LENGTH:
        raise LocalProtocolError(f"item 0x{item_type:02X} longer than 65535 bytes")
    return _ITEM_HEADER.pack(item_type, second_byte, len(body)) + body


def _with_length(raw: bytes, what: str) -> bytes:
    """A field preceded by its own 2-byte length (PS3.7 D.3.3 sub-items)."""
    if len(raw) > _MAX_ITEM_LENGTH:
        raise LocalProtocolError(f"{what} longer than 65535 bytes")
    return _UINT16.pack(len(raw)) + raw


def _encode_associate(pdu: AssociateRQ | AssociateAC) -> bytes:
    what = "called AE title" if isinstance(pdu, AssociateRQ) else "AC called AE title field"
    parts = [
        _ASSOCIATE_FIXED.pack(
            pdu.protocol_version,
            0,
            _encode_ae_title(pdu.called_ae_title, what),
            _encode_ae_title(pdu.calling_ae_title, "calling AE title"),
            b"",  # PS3.8 Table 9-11 bytes 43-74: reserved, sent as zeros
        ),
        _item(_APPLICATION_CONTEXT, _ascii(pdu.application_context_name, "application context")),
    ]
    for context in pdu.presentation_contexts:
        if isinstance(context, PresentationContextRQ):
            sub_items = [_item(_ABSTRACT_SYNTAX, _ascii(context.abstract_syntax, "UID"))]
            sub_items += [
                _item(_TRANSFER_SYNTAX, _ascii(ts, "UID")) for ts in context.transfer_syntaxes
            ]
            fixed = _CONTEXT_FIXED.pack(context.context_id, 0, 0, 0)
            parts.append(_item(_CONTEXT_RQ, fixed + b"".join(sub_items)))
        else:
            # PS3.8 9.3.3.2: one transfer syntax sub-item even when not accepted.
            fixed = _CONTEXT_FIXED.pack(context.context_id, 0, context.result, 0)
            sub_item = _item(_TRANSFER_SYNTAX, _ascii(context.transfer_syntax, "UID"))
            parts.append(_item(_CONTEXT_AC, fixed + sub_item))
    parts.append(_item(_USER_INFORMATION, b"".join(map(_encode_user_item, pdu.user_items))))
    return b"".join(parts)


def _encode_user_item(item: UserItem) -> bytes:
    if isinstance(item, MaximumLength):
        return _item(_MAXIMUM_LENGTH, _UINT32.pack(item.maximum_length))
    if isinstance(item, ImplementationClassUID):
        return _item(_IMPLEMENTATION_CLASS_UID, _ascii(item.uid, "UID"))
    if isinstance(item, AsynchronousOperationsWindow):
        body = _UINT16.pack(item.max_operations_invoked)
        return _item(_ASYNC_OPERATIONS_WINDOW, body + _UINT16.pack(item.max_operations_performed))
    if isinstance(item, RoleSelection):
        body = _with_length(_ascii(item.sop_class_uid, "UID"), "UID")
        return _item(_ROLE_SELECTION, body + bytes((int(item.scu_role), int(item.scp_role))))
    if isinstance(item, ImplementationVersionName):
        return _item(_IMPLEMENTATION_VERSION_NAME, _ascii(item.name, "version name"))
    if isinstance(item, SOPClassExtendedNegotiation):
        body = _with_length(_ascii(item.sop_class_uid, "UID"), "UID")
        return _item(_SOP_CLASS_EXTENDED, body + item.service_class_application_information)
    if isinstance(item, SOPClassCommonExtendedNegotiation):
        related = b"".join(
            _with_length(_ascii(uid, "UID"), "UID") for uid in item.related_general_sop_class_uids
        )
        body = (
            _with_length(_ascii(item.sop_class_uid, "UID"), "UID")
            + _with_length(_ascii(item.service_class_uid, "UID"), "UID")
            + _with_length(related, "related general SOP classes")
        )
        # PS3.7 Table D.3-12: byte 2 is the Sub-Item-version, 0.
        return _item(_SOP_CLASS_COMMON_EXTENDED, body, second_byte=0)
    if isinstance(item, UserIdentityRQ):
        body = (
            bytes((item.identity_type, int(item.positive_response_requested)))
            + _with_length(item.primary_field, "primary field")
            + _with_length(item.secondary_field, "secondary field")
        )
        return _item(_USER_IDENTITY_RQ, body)
    if isinstance(item, UserIdentityAC):
        return _item(_USER_IDENTITY_AC, _with_length(item.server_response, "server response"))
    if isinstance(item, UnknownUserItem):
        return _item(item.item_type, item.data)
    raise LocalProtocolError(f"not a user information sub-item: {item!r}")


def _encode_pdata(pdu: PDataTF) -> bytes:
    parts = []
    for value in pdu.values:
        parts.append(
            PDV_HEADER.pack(len(value.data) + 2, value.context_id, value.message_control_header)
        )
        parts.append(value.data)
    return b"".join(parts)


def _encode_body(pdu: PDU) -> tuple[int, bytes]:
    if isinstance(pdu, PDataTF):
        return PDUType.P_DATA_TF, _encode_pdata(pdu)
    if isinstance(pdu, AssociateRQ):
        return PDUType.ASSOCIATE_RQ, _encode_associate(pdu)
    if isinstance(pdu, AssociateAC):
        return PDUType.ASSOCIATE_AC, _encode_associate(pdu)
    if isinstance(pdu, AssociateRJ):
        # PS3.8 Table 9-21: reserved, result, source, reason/diag.
        return PDUType.ASSOCIATE_RJ, _FOUR_BYTES.pack(0, pdu.result, pdu.source, pdu.reason)
    if isinstance(pdu, ReleaseRQ):
        return PDUType.RELEASE_RQ, bytes(4)  # PS3.8 Table 9-24: 4 reserved bytes
    if isinstance(pdu, ReleaseRP):
        return PDUType.RELEASE_RP, bytes(4)  # PS3.8 Table 9-25: 4 reserved bytes
    if isinstance(pdu, Abort):
        # PS3.8 Table 9-26: two reserved bytes, source, reason/diag.
        return PDUType.ABORT, _FOUR_BYTES.pack(0, 0, pdu.source, pdu.reason)
    raise LocalProtocolError(f"not a PDU: {pdu!r}")


# --- Decoding ----------------------------------------------------------------------------------


def decode_pdu(data: bytes | bytearray | memoryview) -> PDU:
    """The PDU held in ``data``, which must be exactly one whole PDU, header included.

    Raises :class:`~.errors.RemoteProtocolError` (with the A-ABORT reason, or for an
    unsupported protocol version the A-ASSOCIATE-RJ answer) when the bytes are malformed.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    if len(view) < PDU_HEADER_LENGTH:
        raise _invalid(f"PDU truncated: {len(view)} bytes, the header alone is 6")
    pdu_type, _, length = PDU_HEADER.unpack_from(view)
    decoder = _DECODERS.get(pdu_type)
    if decoder is None:
        raise RemoteProtocolError(
            f"unrecognised PDU type 0x{pdu_type:02X}", abort_reason=AbortReason.UNRECOGNIZED_PDU
        )
    if length != len(view) - PDU_HEADER_LENGTH:
        raise _invalid(f"PDU-length {length} but {len(view) - PDU_HEADER_LENGTH} body bytes")
    return decoder(view[PDU_HEADER_LENGTH:])


def _iter_items(view: memoryview, where: str) -> Iterator[tuple[int, memoryview]]:
    """(item type, item body) for each item laid end to end in ``view``."""
    position = 0
    end = len(view)
    while position < end:
        if end - position < _ITEM_HEADER_LENGTH:
            raise _invalid(f"truncated item header in {where}")
        item_type, _, length = _ITEM_HEADER.unpack_from(view, position)
        start = position + _ITEM_HEADER_LENGTH
        position = start + length
        if position > end:
            raise _invalid(
                f"item 0x{item_type:02X} in {where} declares {length} bytes, "
                f"{end - start} are present"
            )
        yield item_type, view[start:position]


def _text(view: memoryview, what: str) -> str:
    raw = bytes(view)
    if not raw.isascii():
        raise _invalid(f"{what} is not ASCII: {raw!r}")
    return raw.decode("ascii")


def _uid(view: memoryview) -> str:
    # PS3.8 Annex F: UIDs in items are not padded; a trailing NUL (PS3.5 9.1 padding)
    # from a lax sender is accepted and dropped.
    return _text(view, "UID").rstrip("\0")


def _length_prefixed(view: memoryview, position: int, what: str) -> tuple[memoryview, int]:
    """A field preceded by a 2-byte length at ``position``; returns it and the next position."""
    if len(view) - position < 2:
        raise _invalid(f"{what}: length field missing")
    (length,) = _UINT16.unpack_from(view, position)
    start = position + 2
    end = start + length
    if end > len(view):
        raise _invalid(f"{what}: declares {length} bytes, {len(view) - start} are present")
    return view[start:end], end


def _decode_associate_rq(body: memoryview) -> AssociateRQ:
    version, called, calling, contexts, user_items, app_context = _decode_associate(body, True)
    return AssociateRQ(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(c for c in contexts if isinstance(c, PresentationContextRQ)),
        user_items=user_items,
        application_context_name=app_context,
        protocol_version=version,
    )


def _decode_associate_ac(body: memoryview) -> AssociateAC:
    version, called, calling, contexts, user_items, app_context = _decode_associate(body, False)
    return AssociateAC(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(c for c in contexts if isinstance(c, PresentationContextAC)),
        user_items=user_items,
        application_context_name=app_context,
        protocol_version=version,
    )


def _decode_associate(
    body: memoryview, is_request: bool
) -> tuple[
    int,
    str,
    str,
    list[PresentationContextRQ | PresentationContextAC],
    tuple[UserItem, ...],
    str,
]:
    name = "A-ASSOCIATE-RQ" if is_request else "A-ASSOCIATE-AC"
    if len(body) < _ASSOCIATE_FIXED.size:
        raise _invalid(f"{name} truncated: {len(body)} body bytes, the fixed part is 68")
    version, _, called_raw, calling_raw, _ = _ASSOCIATE_FIXED.unpack_from(body)
    if not version & 0x0001:
        # PS3.8 9.3.2: only bit 0 is tested. PS3.8 9.3.4 Table 9-21: the RQ is answered
        # with a permanent rejection, ACSE source, "protocol-version not supported".
        reject = None
        if is_request:
            reject = RejectAnswer(
                RejectResult.PERMANENT,
                RejectSource.SERVICE_PROVIDER_ACSE,
                RejectACSEReason.PROTOCOL_VERSION_NOT_SUPPORTED,
            )
        raise RemoteProtocolError(
            f"{name} protocol-version 0x{version:04X} lacks version 1 (bit 0)",
            abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
            reject=reject,
        )
    if is_request:
        called = _decode_ae_title(called_raw, "called AE title")
        calling = _decode_ae_title(calling_raw, "calling AE title")
    else:
        # PS3.8 Table 9-17: in the AC these fields are reserved, "not tested".
        called = called_raw.decode("ascii", "replace").rstrip(" \0")
        calling = calling_raw.decode("ascii", "replace").rstrip(" \0")
    app_context: str | None = None
    contexts: list[PresentationContextRQ | PresentationContextAC] = []
    user_items: tuple[UserItem, ...] | None = None
    context_type = _CONTEXT_RQ if is_request else _CONTEXT_AC
    for item_type, item in _iter_items(body[_ASSOCIATE_FIXED.size :], name):
        if item_type == context_type:
            contexts.append(_decode_context_rq(item) if is_request else _decode_context_ac(item))
        elif item_type == _APPLICATION_CONTEXT:
            if app_context is not None:
                raise _unexpected(f"{name} holds a second Application Context item")
            app_context = _uid(item)
        elif item_type == _USER_INFORMATION:
            if user_items is not None:
                raise _unexpected(f"{name} holds a second User Information item")
            user_items = tuple(_decode_user_item(t, v) for t, v in _iter_items(item, "user info"))
        elif item_type in _KNOWN_ITEM_TYPES:
            raise _unexpected(f"item 0x{item_type:02X} does not belong in an {name}")
        # else: PS3.8 9.3.1, an item of unrecognised type is ignored and skipped.
    return (
        version,
        called,
        calling,
        contexts,
        user_items or (),
        app_context if app_context is not None else "",
    )


def _decode_ae_title(raw: bytes, what: str) -> str:
    # PS3.8 Table 9-11: 16 ISO 646 characters, trailing spaces not significant. Some old
    # senders pad with NULs instead; both are dropped.
    if not raw.isascii():
        raise _invalid(f"{what} is not ASCII: {raw!r}")
    return raw.decode("ascii").rstrip(" \0")


def _decode_context_rq(item: memoryview) -> PresentationContextRQ:
    # PS3.8 9.3.2.2 Table 9-14: ID, three reserved bytes, one abstract syntax sub-item,
    # one or more transfer syntax sub-items. A context without transfer syntaxes is let
    # through (empty tuple) for negotiation to refuse, not aborted.
    if len(item) < _CONTEXT_FIXED.size:
        raise _invalid("Presentation Context item (RQ) shorter than 4 bytes")
    context_id = item[0]
    abstract_syntax: str | None = None
    transfer_syntaxes: list[str] = []
    for sub_type, sub_item in _iter_items(item[_CONTEXT_FIXED.size :], "presentation context"):
        if sub_type == _TRANSFER_SYNTAX:
            transfer_syntaxes.append(_uid(sub_item))
        elif sub_type == _ABSTRACT_SYNTAX:
            if abstract_syntax is not None:
                raise _unexpected(f"context {context_id} has two Abstract Syntax sub-items")
            abstract_syntax = _uid(sub_item)
        elif sub_type in _KNOWN_ITEM_TYPES:
            raise _unexpected(f"item 0x{sub_type:02X} in Presentation Context item (RQ)")
    if abstract_syntax is None:
        raise _invalid(f"presentation context {context_id} has no Abstract Syntax sub-item")
    return PresentationContextRQ(context_id, abstract_syntax, tuple(transfer_syntaxes))


def _decode_context_ac(item: memoryview) -> PresentationContextAC:
    # PS3.8 9.3.3.2 Table 9-18: ID, reserved, Result/Reason, reserved, one transfer syntax
    # sub-item (its value not significant unless accepted; lax acceptors that leave it out
    # of a refused context are tolerated).
    if len(item) < _CONTEXT_FIXED.size:
        raise _invalid("Presentation Context item (AC) shorter than 4 bytes")
    context_id, _, result, _ = _CONTEXT_FIXED.unpack_from(item)
    transfer_syntax: str | None = None
    for sub_type, sub_item in _iter_items(item[_CONTEXT_FIXED.size :], "presentation context"):
        if sub_type == _TRANSFER_SYNTAX:
            if transfer_syntax is not None:
                raise _unexpected(f"context {context_id} (AC) has two Transfer Syntax sub-items")
            transfer_syntax = _uid(sub_item)
        elif sub_type in _KNOWN_ITEM_TYPES:
            raise _unexpected(f"item 0x{sub_type:02X} in Presentation Context item (AC)")
    if transfer_syntax is None:
        if result == ContextResult.ACCEPTANCE:
            raise _invalid(f"accepted presentation context {context_id} has no transfer syntax")
        transfer_syntax = ""
    return PresentationContextAC(context_id, result, transfer_syntax)


def _decode_user_item(item_type: int, body: memoryview) -> UserItem:
    """One User Information sub-item (PS3.8 Annex D.1, PS3.7 D.3.3)."""
    decoder = _USER_ITEM_DECODERS.get(item_type)
    if decoder is None:
        return UnknownUserItem(item_type, bytes(body))
    return decoder(body)


def _need(body: memoryview, size: int, what: str) -> None:
    if len(body) < size:
        raise _invalid(f"{what} sub-item holds {len(body)} bytes, needs {size}")


def _decode_maximum_length(body: memoryview) -> MaximumLength:
    _need(body, 4, "Maximum Length")  # PS3.8 Table D.1-1
    return MaximumLength(_UINT32.unpack_from(body)[0])


def _decode_async_window(body: memoryview) -> AsynchronousOperationsWindow:
    _need(body, 4, "Asynchronous Operations Window")  # PS3.7 Table D.3-7
    invoked, performed = struct.unpack_from(">HH", body)
    return AsynchronousOperationsWindow(invoked, performed)


def _decode_role_selection(body: memoryview) -> RoleSelection:
    # PS3.7 Table D.3-9: UID-length, SOP-class-uid, SCU-role, SCP-role.
    uid, position = _length_prefixed(body, 0, "SCP/SCU Role Selection")
    _need(body, position + 2, "SCP/SCU Role Selection")
    return RoleSelection(_uid(uid), body[position] != 0, body[position + 1] != 0)


def _decode_sop_class_extended(body: memoryview) -> SOPClassExtendedNegotiation:
    # PS3.7 Table D.3-11: SOP-class-uid-length, SOP-class-uid, application information.
    uid, position = _length_prefixed(body, 0, "SOP Class Extended Negotiation")
    return SOPClassExtendedNegotiation(_uid(uid), bytes(body[position:]))


def _decode_common_extended(body: memoryview) -> SOPClassCommonExtendedNegotiation:
    # PS3.7 Tables D.3-12/D.3-13: SOP class UID, service class UID, then a list of
    # related general SOP class UIDs, each field with its own 2-byte length.
    what = "SOP Class Common Extended Negotiation"
    sop_class, position = _length_prefixed(body, 0, what)
    service_class, position = _length_prefixed(body, position, what)
    related_uids: list[str] = []
    if position < len(body):
        related, _ = _length_prefixed(body, position, what)
        offset = 0
        while offset < len(related):
            uid, offset = _length_prefixed(related, offset, "related general SOP class")
            related_uids.append(_uid(uid))
    return SOPClassCommonExtendedNegotiation(
        _uid(sop_class), _uid(service_class), tuple(related_uids)
    )


def _decode_user_identity_rq(body: memoryview) -> UserIdentityRQ:
    # PS3.7 Table D.3-14: type, positive-response-requested, primary-field-length,
    # primary field, secondary-field-length, secondary field. A sender that leaves out
    # the (empty) secondary field altogether is tolerated.
    _need(body, 2, "User Identity")
    primary, position = _length_prefixed(body, 2, "User Identity primary field")
    secondary = b""
    if position < len(body):
        secondary_view, _ = _length_prefixed(body, position, "User Identity secondary field")
        secondary = bytes(secondary_view)
    return UserIdentityRQ(body[0], body[1] != 0, bytes(primary), secondary)


def _decode_user_identity_ac(body: memoryview) -> UserIdentityAC:
    # PS3.7 Table D.3-15: server-response-length, server response.
    response, _ = _length_prefixed(body, 0, "User Identity server response")
    return UserIdentityAC(bytes(response))


_USER_ITEM_DECODERS: dict[int, Callable[[memoryview], UserItem]] = {
    _MAXIMUM_LENGTH: _decode_maximum_length,
    _IMPLEMENTATION_CLASS_UID: lambda body: ImplementationClassUID(_uid(body)),
    _ASYNC_OPERATIONS_WINDOW: _decode_async_window,
    _ROLE_SELECTION: _decode_role_selection,
    _IMPLEMENTATION_VERSION_NAME: lambda body: ImplementationVersionName(
        _text(body, "implementation version name")
    ),
    _SOP_CLASS_EXTENDED: _decode_sop_class_extended,
    _SOP_CLASS_COMMON_EXTENDED: _decode_common_extended,
    _USER_IDENTITY_RQ: _decode_user_identity_rq,
    _USER_IDENTITY_AC: _decode_user_identity_ac,
}


def _decode_fixed_four(body: memoryview, name: str) -> tuple[int, int, int, int]:
    # PS3.8 Tables 9-21, 9-24, 9-25, 9-26: these PDUs have a 4-byte body. Anything else is
    # refused rather than guessed at (the reader refuses it from the header alone).
    if len(body) != 4:
        raise _invalid(f"{name} PDU-length {len(body)}, must be 4")
    fields: tuple[int, int, int, int] = _FOUR_BYTES.unpack(body)
    return fields


def _decode_associate_rj(body: memoryview) -> AssociateRJ:
    _, result, source, reason = _decode_fixed_four(body, "A-ASSOCIATE-RJ")
    return AssociateRJ(result, source, reason)


def _decode_release_rq(body: memoryview) -> ReleaseRQ:
    _decode_fixed_four(body, "A-RELEASE-RQ")
    return ReleaseRQ()


def _decode_release_rp(body: memoryview) -> ReleaseRP:
    _decode_fixed_four(body, "A-RELEASE-RP")
    return ReleaseRP()


def _decode_abort(body: memoryview) -> Abort:
    _, _, source, reason = _decode_fixed_four(body, "A-ABORT")
    return Abort(source, reason)


def _decode_pdata(body: memoryview) -> PDataTF:
    # PS3.8 9.3.5: one or more PDV items, each Item-length >= 2 and within the PDU.
    values: list[PresentationDataValue] = []
    position = 0
    end = len(body)
    while position < end:
        if end - position < PDV_HEADER_LENGTH:
            raise _invalid("truncated PDV item header")
        item_length, context_id, control = PDV_HEADER.unpack_from(body, position)
        if item_length < PDV_ITEM_OVERHEAD:
            raise _invalid(f"PDV Item-length {item_length} < 2")
        start = position + PDV_HEADER_LENGTH
        position = start + item_length - PDV_ITEM_OVERHEAD
        if position > end:
            raise _invalid(f"PDV Item-length {item_length} runs past the P-DATA-TF PDU")
        values.append(PresentationDataValue(context_id, control, bytes(body[start:position])))
    if not values:
        raise _invalid("P-DATA-TF without any PDV item")
    return PDataTF(tuple(values))


_DECODERS: dict[int, Callable[[memoryview], PDU]] = {
    PDUType.ASSOCIATE_RQ: _decode_associate_rq,
    PDUType.ASSOCIATE_AC: _decode_associate_ac,
    PDUType.ASSOCIATE_RJ: _decode_associate_rj,
    PDUType.P_DATA_TF: _decode_pdata,
    PDUType.RELEASE_RQ: _decode_release_rq,
    PDUType.RELEASE_RP: _decode_release_rp,
    PDUType.ABORT: _decode_abort,
}

__all__ = [
    "PDU_HEADER",
    "PDU_HEADER_LENGTH",
    "PDV_HEADER",
    "PDV_HEADER_LENGTH",
    "decode_pdu",
    "encode_pdata_header",
    "encode_pdu",
    "encode_pdv_header",
]

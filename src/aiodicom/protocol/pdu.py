"""The seven Upper Layer PDUs and their items, as frozen dataclasses (PS3.8 9.3).

These are plain values: no bytes are kept beside them, and encoding/decoding lives in
:mod:`aiodicom.protocol.pdu_codec`. ``decode_pdu(encode_pdu(x)) == x`` for every valid
value. Text fields (AE titles, UIDs) hold the value without padding: AE titles without
their trailing spaces, UIDs without a trailing NUL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from .codes import DICOM_APPLICATION_CONTEXT

_ItemT = TypeVar("_ItemT")

# --- Presentation contexts (PS3.8 9.3.2.2, 9.3.3.2) -----------------------------------


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """A proposed presentation context: one abstract syntax, one or more transfer syntaxes."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """The answer to one proposed context.

    ``result`` is a :class:`~aiodicom.protocol.codes.ContextResult`. PS3.8 9.3.3.2: when
    the context is not accepted the transfer syntax sub-item is still sent, but its value
    is not significant; an empty string stands for it here.
    """

    context_id: int
    result: int
    transfer_syntax: str


# --- User Information sub-items (PS3.8 Annex D, PS3.7 Annex D.3.3) ------------------------


@dataclass(frozen=True, slots=True)
class MaximumLength:
    """Item 0x51: the largest P-DATA-TF PDU *body* the sender can receive; 0 = no limit."""

    maximum_length: int


@dataclass(frozen=True, slots=True)
class ImplementationClassUID:
    """Item 0x52."""

    uid: str


@dataclass(frozen=True, slots=True)
class AsynchronousOperationsWindow:
    """Item 0x53 (PS3.7 D.3.3.3); 0 means unlimited."""

    max_operations_invoked: int
    max_operations_performed: int


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """Item 0x54 (PS3.7 D.3.3.4): SCP/SCU role selection for one SOP class."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True, slots=True)
class ImplementationVersionName:
    """Item 0x55: 1 to 16 characters."""

    name: str


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """Item 0x56 (PS3.7 D.3.3.5): service-class specific bytes for one SOP class."""

    sop_class_uid: str
    service_class_application_information: bytes


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """Item 0x57 (PS3.7 D.3.3.6), sent by the requestor only."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """Item 0x58 (PS3.7 D.3.3.7.1). ``identity_type`` is a UserIdentityType value."""

    identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """Item 0x59 (PS3.7 D.3.3.7.2): the server response (may be empty)."""

    server_response: bytes


@dataclass(frozen=True, slots=True)
class UnknownUserItem:
    """A user-information sub-item we do not know: kept, never fatal (PS3.8 D.1)."""

    item_type: int
    data: bytes


UserItem = (
    MaximumLength
    | ImplementationClassUID
    | AsynchronousOperationsWindow
    | RoleSelection
    | ImplementationVersionName
    | SOPClassExtendedNegotiation
    | SOPClassCommonExtendedNegotiation
    | UserIdentityRQ
    | UserIdentityAC
    | UnknownUserItem
)


# --- The PDUs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociateRQ:
    """A-ASSOCIATE-RQ (type 0x01, PS3.8 9.3.2)."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_items: tuple[UserItem, ...] = ()
    application_context_name: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1

    def find_user_item(self, kind: type[_ItemT]) -> _ItemT | None:
        return _find(self.user_items, kind)

    def find_user_items(self, kind: type[_ItemT]) -> tuple[_ItemT, ...]:
        return tuple(item for item in self.user_items if isinstance(item, kind))


@dataclass(frozen=True, slots=True)
class AssociateAC:
    """A-ASSOCIATE-AC (type 0x02, PS3.8 9.3.3).

    The AE title fields are "reserved" in the AC: sent with the values of the RQ, not
    tested on receipt (PS3.8 9.3.3.1).
    """

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_items: tuple[UserItem, ...] = ()
    application_context_name: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1

    def find_user_item(self, kind: type[_ItemT]) -> _ItemT | None:
        return _find(self.user_items, kind)

    def find_user_items(self, kind: type[_ItemT]) -> tuple[_ItemT, ...]:
        return tuple(item for item in self.user_items if isinstance(item, kind))


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """A-ASSOCIATE-RJ (type 0x03, PS3.8 9.3.4); codes in :mod:`.codes`."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class PresentationDataValue:
    """One PDV item of a P-DATA-TF (PS3.8 9.3.5.1, message control header in Annex E.2).

    ``message_control_header`` bit 0: 1 = command, 0 = data set;
    bit 1: 1 = last fragment of the command or data set.
    """

    context_id: int
    message_control_header: int
    data: bytes

    @property
    def is_command(self) -> bool:
        return bool(self.message_control_header & 0x01)

    @property
    def is_last(self) -> bool:
        return bool(self.message_control_header & 0x02)


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF (type 0x04, PS3.8 9.3.5): one or more PDVs."""

    values: tuple[PresentationDataValue, ...]


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    """A-RELEASE-RQ (type 0x05, PS3.8 9.3.6)."""


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    """A-RELEASE-RP (type 0x06, PS3.8 9.3.7)."""


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT (type 0x07, PS3.8 9.3.8); codes in :mod:`.codes`."""

    source: int
    reason: int = 0


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort


def _find(items: tuple[UserItem, ...], kind: type[_ItemT]) -> _ItemT | None:
    for item in items:
        if isinstance(item, kind):
            return item
    return None


__all__ = [
    "PDU",
    "Abort",
    "AssociateAC",
    "AssociateRJ",
    "AssociateRQ",
    "AsynchronousOperationsWindow",
    "ImplementationClassUID",
    "ImplementationVersionName",
    "MaximumLength",
    "PDVFragment",
    "PDataStarted",
    "PDataTF",
    "PresentationContextAC",
    "PresentationContextRQ",
    "PresentationDataValue",
    "ReaderItem",
    "ReleaseRP",
    "ReleaseRQ",
    "RoleSelection",
    "SOPClassCommonExtendedNegotiation",
    "SOPClassExtendedNegotiation",
    "UnknownUserItem",
    "UserIdentityAC",
    "UserIdentityRQ",
    "UserItem",
]


# --- Items of the incremental reader ---------------------------------------------------------
#
# The reader (:mod:`aiodicom.protocol.pdu_reader`) hands out every PDU but P-DATA-TF whole,
# as the dataclasses above. P-DATA-TF is streamed instead, so that a large data set never
# has to sit in memory: first a PDataStarted for the PDU header (PS3.8 Evt10), then one or
# more PDVFragment pieces per PDV, each a memoryview of the bytes that were fed (no copy).
#
# These two are named tuples, not frozen dataclasses: as immutable, and cheaper to make
# (a frozen dataclass sets each field through object.__setattr__). There are several per
# data set: as named tuples the whole receiver runs 2 % fewer instructions per small data
# set (callgrind, an in-memory session). They never leave the protocol core.


class PDataStarted(NamedTuple):
    """The 6-byte header of a P-DATA-TF PDU has been read; ``length`` is its body length."""

    length: int


class PDVFragment(NamedTuple):
    """A piece of one PDV's data.

    A PDV may arrive in several pieces (when its bytes arrive over several reads);
    ``pdv_complete`` is True on the piece that ends the PDV. ``last_fragment`` is the
    message control header's bit 1 of the PDV (PS3.8 E.2), the same on every piece.
    """

    context_id: int
    is_command: bool
    last_fragment: bool
    pdv_complete: bool
    data: memoryview

    @property
    def ends_message_part(self) -> bool:
        """True on the final piece of a whole command set or data set."""
        return self.last_fragment and self.pdv_complete


ReaderItem = PDU | PDataStarted | PDVFragment

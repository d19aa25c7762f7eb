"""What the sans-IO association reports to its user, and what the user asks of it.

In the manner of h11 and wsproto: one frozen, slotted dataclass per happening, named for
what happened. Events never hold a reference to the association. They map onto the
primitives of PS3.8 section 7 (A-ASSOCIATE, P-DATA, A-RELEASE, A-ABORT, A-P-ABORT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .pdu import AssociateAC, AssociateRJ, AssociateRQ

if TYPE_CHECKING:
    from .dimse import DimseCommand

# --- Reported by Association.next_event() ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """A-ASSOCIATE indication (acceptor): answer with AcceptAssociation or RejectAssociation."""

    request: AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """A-ASSOCIATE confirmation, accepted (requestor)."""

    accept: AssociateAC


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """A-ASSOCIATE confirmation, rejected (requestor); the connection is to be closed."""

    reject: AssociateRJ


@dataclass(frozen=True, slots=True)
class DimseCommandReceived:
    """A complete DIMSE command set arrived on ``context_id``.

    When ``command.has_dataset`` is true, DataSetChunkReceived events follow.
    """

    context_id: int
    command: DimseCommand


@dataclass(frozen=True, slots=True)
class DataSetChunkReceived:
    """A piece of the data set of the last command; ``data`` is a view of received bytes.

    The view is only valid until the next bytes are fed in by the caller's own buffer
    reuse; a consumer that keeps it must copy it (``bytes(data)``). ``last`` marks the
    end of the data set.
    """

    context_id: int
    data: memoryview
    last: bool


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication: the peer asks to release; answer with ReleaseAssociation."""


@dataclass(frozen=True, slots=True)
class AssociationReleased:
    """A-RELEASE confirmation: the release we asked for is done; close the connection."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT or A-P-ABORT indication.

    ``source`` and ``reason`` are the A-ABORT fields (PS3.8 9.3.8) whether the peer sent
    them or our side aborted because the peer broke the protocol (``local`` is then
    True and ``detail`` says why).
    """

    source: int
    reason: int
    local: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The transport is finished with: nothing more will come or may be sent."""


Event = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | DimseCommandReceived
    | DataSetChunkReceived
    | ReleaseRequested
    | AssociationReleased
    | Aborted
    | ConnectionClosed
)


# --- Asked of Association.send() by its user (the local primitives of PS3.8 7) ---------------


@dataclass(frozen=True, slots=True)
class RequestAssociation:
    """A-ASSOCIATE request (requestor, Evt1); the request goes out once connected."""

    request: AssociateRQ


@dataclass(frozen=True, slots=True)
class AcceptAssociation:
    """A-ASSOCIATE response, accept (acceptor, Evt7)."""

    accept: AssociateAC


@dataclass(frozen=True, slots=True)
class RejectAssociation:
    """A-ASSOCIATE response, reject (acceptor, Evt8)."""

    reject: AssociateRJ


@dataclass(frozen=True, slots=True)
class SendMessage:
    """P-DATA request (Evt9): one whole DIMSE message, command and optional data set."""

    context_id: int
    command: DimseCommand
    dataset: bytes | memoryview | None = None


@dataclass(frozen=True, slots=True)
class RequestRelease:
    """A-RELEASE request (Evt11)."""


@dataclass(frozen=True, slots=True)
class AcceptRelease:
    """A-RELEASE response (Evt14): the answer to ReleaseRequested."""


@dataclass(frozen=True, slots=True)
class AbortAssociation:
    """A-ABORT request (Evt15), sent with source service-user (PS3.8 9.3.8)."""


SendEvent = (
    RequestAssociation
    | AcceptAssociation
    | RejectAssociation
    | SendMessage
    | RequestRelease
    | AcceptRelease
    | AbortAssociation
)

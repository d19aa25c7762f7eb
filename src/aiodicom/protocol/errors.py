"""Protocol errors, in the manner of h11: one base class, two directions.

Internal code raises :class:`RemoteProtocolError` when the peer broke the protocol and
:class:`LocalProtocolError` when our own user asked for something the protocol forbids.
A remote error carries the answer the standard prescribes: the A-ABORT source/reason
(PS3.8 9.3.8) or, while an association is being negotiated, the A-ASSOCIATE-RJ
result/source/reason (PS3.8 9.3.4). The receive boundary turns it into that PDU.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codes import AbortReason, AbortSource


@dataclass(frozen=True, slots=True)
class RejectAnswer:
    """The A-ASSOCIATE-RJ fields to answer with (PS3.8 Table 9-21)."""

    result: int
    source: int
    reason: int


class ProtocolError(Exception):
    """Something broke the DICOM Upper Layer or DIMSE protocol.

    ``abort_source``/``abort_reason`` say which A-ABORT answers it; ``reject`` is set
    when the right answer is an A-ASSOCIATE-RJ instead (only possible before the
    association is established).
    """

    def __init__(
        self,
        message: str,
        *,
        abort_source: int = AbortSource.SERVICE_PROVIDER,
        abort_reason: int = AbortReason.NOT_SPECIFIED,
        reject: RejectAnswer | None = None,
    ) -> None:
        super().__init__(message)
        self.abort_source = abort_source
        self.abort_reason = abort_reason
        self.reject = reject


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the protocol."""


class LocalProtocolError(ProtocolError):
    """Our own side tried to do something the protocol does not allow now."""

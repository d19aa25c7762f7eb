"""The sans-IO association: bytes in, events out; events in, bytes out.

One :class:`Association` per transport connection, for either role. Its user (the anyio
layer, or a test) drives it with five calls and reads two things back::

    assoc.connection_made(now)        # transport is up (Evt5 acceptor / Evt2 requestor)
    assoc.receive_data(data, now)     # bytes from the peer
    assoc.connection_lost()           # the peer closed the transport (Evt17)
    assoc.handle_timer(now)           # time has passed; ARTIM may expire (Evt18)
    assoc.send(event, now)            # a local primitive (Evt1/7/8/9/11/14/15)

    assoc.next_event()                # what happened, one event at a time, or None
    assoc.data_to_send()              # bytes to write to the peer (may be empty)

and it reports the deadline of its only timer, ARTIM, with :meth:`get_timer`. It never
reads a clock: ``now`` is whatever monotonic time the caller uses. When :attr:`closed`
turns true the caller flushes :meth:`data_to_send` and closes the transport.

Every change of state goes through :func:`aiodicom.protocol.state.transition` (PS3.8
Table 9-10); the handlers below carry out the actions the table names and never choose a
next state themselves. DIMSE/idle timeouts are policy of the I/O layer, not of the
Upper Layer, and are not here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .codes import AbortReason, AbortSource, ContextResult
from .dimse import DimseCommand, encode_command
from .dimse_stream import MessageAssembler, encode_message, iter_message_pdus
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    AbortAssociation,
    Aborted,
    AcceptAssociation,
    AcceptRelease,
    AssociationAccepted,
    AssociationRejected,
    AssociationReleased,
    AssociationRequested,
    ConnectionClosed,
    Event,
    RejectAssociation,
    ReleaseRequested,
    RequestAssociation,
    RequestRelease,
    SendEvent,
    SendMessage,
)
from .pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    MaximumLength,
    PDataStarted,
    PDVFragment,
    ReleaseRP,
    ReleaseRQ,
)
from .pdu_codec import encode_pdu
from .pdu_reader import PDUReader
from .state import Action, Role, State, transition
from .state import Event as StateEvent

DEFAULT_ARTIM_TIMEOUT = 30.0
# DCMTK caps association-phase PDUs at 1 MiB; a request claiming 4 GiB is refused on its
# 6-byte header (see PDUReader).
DEFAULT_MAX_ASSOCIATION_PDU_LENGTH = 1_048_576
# PS3.8 D.1: a Maximum Length of 0 means "no limit". Our reader still needs a number.
_UNLIMITED_PDATA_LENGTH = 0xFFFFFFFF

_PDU_EVENTS: dict[type[object], StateEvent] = {
    AssociateAC: StateEvent.EVT3,
    AssociateRJ: StateEvent.EVT4,
    AssociateRQ: StateEvent.EVT6,
    PDataStarted: StateEvent.EVT10,
    ReleaseRQ: StateEvent.EVT12,
    ReleaseRP: StateEvent.EVT13,
    Abort: StateEvent.EVT16,
}

_SEND_EVENTS: dict[type[object], StateEvent] = {
    RequestAssociation: StateEvent.EVT1,
    AcceptAssociation: StateEvent.EVT7,
    RejectAssociation: StateEvent.EVT8,
    SendMessage: StateEvent.EVT9,
    RequestRelease: StateEvent.EVT11,
    AcceptRelease: StateEvent.EVT14,
    AbortAssociation: StateEvent.EVT15,
}


class Association:
    """One DICOM Upper Layer association, sans-IO (PS3.8 section 9)."""

    def __init__(
        self,
        role: Role,
        *,
        artim_timeout: float = DEFAULT_ARTIM_TIMEOUT,
        max_association_pdu_length: int = DEFAULT_MAX_ASSOCIATION_PDU_LENGTH,
    ) -> None:
        self.role = role
        self.state = State.STA1
        self.artim_timeout = artim_timeout
        self._reader = PDUReader(max_pdu_length=max_association_pdu_length)
        self._assembler = MessageAssembler()
        self._events: deque[Event] = deque()
        self._outgoing = bytearray()
        self._artim_deadline: float | None = None
        self._now = 0.0
        # Set once negotiated: the request and the answer, whichever side we are.
        self.request: AssociateRQ | None = None
        self.accept: AssociateAC | None = None
        self.accepted_context_ids: frozenset[int] = frozenset()
        # The largest P-DATA-TF body the peer accepts (PS3.8 D.1); 0 = no limit.
        self.peer_max_pdu_length = 0
        # True while the P-DATA-TF PDU being read was accepted by the state machine
        # (DT-2/AR-6); its PDVs are ignored otherwise (e.g. AA-6 in Sta13).
        self._pdata_accepted = False
        self._started = False
        self._input_finished = False
        self._handlers: dict[Action, Callable[[object], None]] = {
            Action.AE_1: self._ae_1,
            Action.AE_2: self._ae_2,
            Action.AE_3: self._ae_3,
            Action.AE_4: self._ae_4,
            Action.AE_5: self._ae_5,
            Action.AE_6: self._ae_6,
            Action.AE_7: self._ae_7,
            Action.AE_8: self._ae_8,
            Action.DT_1: self._dt_1,
            Action.DT_2: self._dt_2,
            Action.AR_1: self._ar_1,
            Action.AR_2: self._ar_2,
            Action.AR_3: self._ar_3,
            Action.AR_4: self._ar_4,
            Action.AR_5: self._ar_5,
            Action.AR_6: self._dt_2,  # P-DATA indication while awaiting A-RELEASE-RP
            Action.AR_7: self._dt_1,  # P-DATA-TF sent while awaiting our release answer
            Action.AR_8: self._ar_8,
            Action.AR_9: self._ar_9,
            Action.AR_10: self._ar_10,
            Action.AA_1: self._aa_1,
            Action.AA_2: self._aa_2,
            Action.AA_3: self._aa_3,
            Action.AA_4: self._aa_4,
            Action.AA_5: self._aa_5,
            Action.AA_6: self._aa_6,
            Action.AA_7: self._aa_7,
            Action.AA_8: self._aa_8,
        }

    # --- What the user reads back -----------------------------------------------------------

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return bytes."""
        return bool(self._outgoing)

    def data_to_send(self) -> bytes:
        """Bytes the peer must be sent, in order; empties the outgoing buffer."""
        if not self._outgoing:
            return b""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def get_timer(self) -> float | None:
        """When ARTIM expires (in the caller's clock), or None when it is not running."""
        return self._artim_deadline

    @property
    def closed(self) -> bool:
        """True once the transport should be (or has been) closed: Sta1 after a start."""
        return self.state is State.STA1 and self._started

    def _is_paused(self) -> bool:
        # A method, not an inline comparison: mypy narrows self.state across _fire().
        return self.state is State.STA1 or self.state is State.STA3 or self._input_finished

    @property
    def gone(self) -> bool:
        """True once the association has ended (Sta13 or Sta1 after a start): nothing
        more can be sent on it but what the state machine sends by itself."""
        return self.state is State.STA13 or self.closed

    @property
    def can_send_data(self) -> bool:
        """True when a P-DATA request is allowed now (DT-1 in Sta6, AR-7 in Sta8)."""
        return self.state is State.STA6 or self.state is State.STA8

    @property
    def established(self) -> bool:
        """True in Sta6: the association is ready for data transfer."""
        return self.state is State.STA6

    @property
    def has_pending_events(self) -> bool:
        """True while events wait to be taken with :meth:`next_event`."""
        return bool(self._events)

    @property
    def in_message(self) -> bool:
        """True while a DIMSE message is partly received."""
        return self._assembler.in_message

    # --- What the user tells it --------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        """The transport connection is open: Evt5 (acceptor) or Evt2 (requestor)."""
        self._now = now
        self._started = True
        event = StateEvent.EVT5 if self.role is Role.ACCEPTOR else StateEvent.EVT2
        self._fire(event, None)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes from the peer; events and answers become available.

        Data-set chunks handed out as events are views of ``data``: the caller must not
        modify ``data`` until it has consumed those events.
        """
        self._now = now
        if self.state is State.STA1 or self._input_finished:
            return
        try:
            self._reader.feed(data)
        except RemoteProtocolError as error:
            self._protocol_error(error)
            return
        self._process_input()

    def _process_input(self) -> None:
        """Turn the bytes fed so far into events, up to a pause.

        Reading pauses in Sta3, while our answer to an A-ASSOCIATE-RQ is pending: a
        peer that sends its first P-DATA-TF right behind the request (not waiting for the
        A-ASSOCIATE-AC, as DCMTK tolerates) has it read once we have answered, under
        the negotiated limits, instead of meeting Evt10 in Sta3 (AA-8).
        """
        reader = self._reader
        while not self._is_paused():
            try:
                item = reader.next_item()
            except RemoteProtocolError as error:
                self._protocol_error(error)
                return
            if item is None:
                return
            if type(item) is PDVFragment:
                self._pdv_fragment(item)
            else:
                self._fire(_PDU_EVENTS[type(item)], item)

    def connection_lost(self) -> None:
        """The transport was closed by the peer or failed (Evt17)."""
        if self.state is not State.STA1:
            self._fire(StateEvent.EVT17, None)

    def handle_timer(self, now: float) -> None:
        """Let time pass: fires Evt18 when ARTIM has expired."""
        self._now = now
        if self._artim_deadline is not None and now >= self._artim_deadline:
            self._artim_deadline = None
            self._fire(StateEvent.EVT18, None)

    def stream_message(
        self, context_id: int, command: DimseCommand, dataset_length: int | None, now: float
    ) -> Iterator[tuple[bytes, int]]:
        """P-DATA request for a message whose data set the caller writes itself.

        For large data sets (a file sent from disk): returns ``(header, data_length)``
        pairs; the caller writes ``header``, then the next ``data_length`` bytes of the
        data set, in order, so the data set is never copied here. The state and the
        context are checked once, now (Evt9); a caller that also reads from the peer
        should stop writing when :attr:`established` turns false mid-way.
        """
        self._now = now
        self._fire(StateEvent.EVT9, _StreamedMessage(context_id))
        return iter_message_pdus(
            context_id, encode_command(command), dataset_length, self.peer_max_pdu_length
        )

    def send(self, event: SendEvent, now: float) -> bytes:
        """Issue a local primitive; returns the bytes to write (also :meth:`data_to_send`).

        Raises :class:`LocalProtocolError` when the primitive is not allowed now.
        """
        self._now = now
        if isinstance(event, RequestAssociation) and self.role is not Role.REQUESTOR:
            raise LocalProtocolError("only a requestor can request an association")
        was_paused = self.state is State.STA3
        self._fire(_SEND_EVENTS[type(event)], event)
        if was_paused:
            self._process_input()  # what arrived behind the A-ASSOCIATE-RQ
        return self.data_to_send()

    # --- The machinery -----------------------------------------------------------------------

    def _fire(self, event: StateEvent, payload: object) -> None:
        action, next_state = transition(self.state, event, self.role)
        self.state = next_state
        self._handlers[action](payload)
        if self.state is State.STA1:
            self._artim_deadline = None
            self._events.append(ConnectionClosed())

    def _protocol_error(self, error: RemoteProtocolError) -> None:
        """Evt19: an unrecognised or invalid PDU (or a broken DIMSE stream)."""
        # Whatever follows the bad bytes cannot be framed: stop reading (the peer gets
        # one answer, not one per later PDU) and let ARTIM or the peer close.
        self._input_finished = True
        if error.reject is not None and self.state is State.STA2:
            # AE-6 finds the request unacceptable to the service provider (e.g. protocol
            # version): Sta3 then, at once, the provider's own A-ASSOCIATE-RJ (Evt8).
            self._fire(StateEvent.EVT6, None)
            reject = AssociateRJ(error.reject.result, error.reject.source, error.reject.reason)
            self._fire(StateEvent.EVT8, RejectAssociation(reject))
            return
        self._fire(StateEvent.EVT19, error)

    def _pdv_fragment(self, fragment: PDVFragment) -> None:
        if not self._pdata_accepted:
            return  # the P-DATA-TF was refused or ignored by the state machine
        if fragment.context_id not in self.accepted_context_ids:
            self._protocol_error(
                RemoteProtocolError(
                    f"PDV on presentation context {fragment.context_id}, which was not accepted",
                    abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
                )
            )
            return
        try:
            output = self._assembler.feed(fragment)
        except RemoteProtocolError as error:
            self._protocol_error(error)
            return
        if output is not None:
            self._events.append(output)

    def _write_pdu(self, pdu: PDU) -> None:
        self._outgoing += encode_pdu(pdu)

    def _start_artim(self) -> None:
        self._artim_deadline = self._now + self.artim_timeout

    def _stop_artim(self) -> None:
        self._artim_deadline = None

    def _negotiated(self, request: AssociateRQ, accept: AssociateAC, *, we_accept: bool) -> None:
        """Record what was agreed and arm the reader's P-DATA cap (PS3.8 D.1)."""
        self.request = request
        self.accept = accept
        self.accepted_context_ids = frozenset(
            context.context_id
            for context in accept.presentation_contexts
            if context.result == ContextResult.ACCEPTANCE
        )
        ours, theirs = (accept, request) if we_accept else (request, accept)
        our_item = ours.find_user_item(MaximumLength)
        their_item = theirs.find_user_item(MaximumLength)
        our_limit = our_item.maximum_length if our_item is not None else 0
        self._reader.max_pdata_length = our_limit or _UNLIMITED_PDATA_LENGTH
        self.peer_max_pdu_length = their_item.maximum_length if their_item is not None else 0

    # --- Actions of PS3.8 Tables 9-6 to 9-9 -----------------------------------------------------
    # Each receives the payload of the event that triggered it (a PDU, a SendEvent, or None).

    def _ae_1(self, payload: object) -> None:
        # Issue TRANSPORT CONNECT: the I/O layer connects, then calls connection_made().
        assert isinstance(payload, RequestAssociation)
        self.request = payload.request

    def _ae_2(self, payload: object) -> None:
        # Send A-ASSOCIATE-RQ.
        assert self.request is not None
        self._write_pdu(self.request)

    def _ae_3(self, payload: object) -> None:
        # A-ASSOCIATE confirmation (accept).
        assert isinstance(payload, AssociateAC) and self.request is not None
        self._negotiated(self.request, payload, we_accept=False)
        self._events.append(AssociationAccepted(payload))

    def _ae_4(self, payload: object) -> None:
        # A-ASSOCIATE confirmation (reject), close transport.
        assert isinstance(payload, AssociateRJ)
        self._events.append(AssociationRejected(payload))

    def _ae_5(self, payload: object) -> None:
        # Transport connection response; start ARTIM (waiting for A-ASSOCIATE-RQ).
        self._start_artim()

    def _ae_6(self, payload: object) -> None:
        # Stop ARTIM; A-ASSOCIATE indication. (The provider-side "unacceptable" branch is
        # taken in _protocol_error, through Evt8 from Sta3.)
        self._stop_artim()
        if isinstance(payload, AssociateRQ):
            self.request = payload
            self._events.append(AssociationRequested(payload))

    def _ae_7(self, payload: object) -> None:
        # Send A-ASSOCIATE-AC.
        assert isinstance(payload, AcceptAssociation) and self.request is not None
        self._negotiated(self.request, payload.accept, we_accept=True)
        self._write_pdu(payload.accept)

    def _ae_8(self, payload: object) -> None:
        # Send A-ASSOCIATE-RJ, start ARTIM.
        assert isinstance(payload, RejectAssociation)
        self._write_pdu(payload.reject)
        self._start_artim()

    def _dt_1(self, payload: object) -> None:
        # Send P-DATA-TF.
        assert isinstance(payload, SendMessage | _StreamedMessage)
        if payload.context_id not in self.accepted_context_ids:
            raise LocalProtocolError(f"presentation context {payload.context_id} was not accepted")
        if isinstance(payload, _StreamedMessage):
            return  # the caller writes the PDUs that stream_message() returns
        self._outgoing += encode_message(
            payload.context_id,
            encode_command(payload.command),
            payload.dataset,
            self.peer_max_pdu_length,
        )

    def _dt_2(self, payload: object) -> None:
        # P-DATA indication: the PDVs that follow are delivered.
        self._pdata_accepted = True

    def _ar_1(self, payload: object) -> None:
        # Send A-RELEASE-RQ.
        self._write_pdu(ReleaseRQ())

    def _ar_2(self, payload: object) -> None:
        # A-RELEASE indication.
        self._pdata_accepted = False
        self._events.append(ReleaseRequested())

    def _ar_3(self, payload: object) -> None:
        # A-RELEASE confirmation, close transport.
        self._events.append(AssociationReleased())

    def _ar_4(self, payload: object) -> None:
        # Send A-RELEASE-RP, start ARTIM.
        self._write_pdu(ReleaseRP())
        self._start_artim()

    def _ar_5(self, payload: object) -> None:
        # Stop ARTIM (transport closed while waiting for the close).
        self._stop_artim()

    def _ar_8(self, payload: object) -> None:
        # A-RELEASE indication during a release collision.
        self._pdata_accepted = False
        self._events.append(ReleaseRequested())

    def _ar_9(self, payload: object) -> None:
        # Send A-RELEASE-RP (collision, requestor side).
        self._write_pdu(ReleaseRP())

    def _ar_10(self, payload: object) -> None:
        # A-RELEASE confirmation (collision, acceptor side).
        self._events.append(AssociationReleased())

    def _aa_1(self, payload: object) -> None:
        # Send A-ABORT and (re)start ARTIM. Service-user source when our user asked for
        # it; when the peer broke the protocol in a state where the table says AA-1, the
        # reason the reader or the DIMSE layer found is sent with provider source.
        self._pdata_accepted = False
        if isinstance(payload, AbortAssociation):
            abort = Abort(AbortSource.SERVICE_USER, 0)
            self._events.append(Aborted(abort.source, abort.reason, local=True))
        else:
            abort = self._abort_for(payload)
            detail = str(payload) if isinstance(payload, ProtocolError) else _describe(payload)
            self._events.append(Aborted(abort.source, abort.reason, local=True, detail=detail))
        self._write_pdu(abort)
        self._start_artim()

    def _aa_2(self, payload: object) -> None:
        # Stop ARTIM if running; close transport.
        self._stop_artim()

    def _aa_3(self, payload: object) -> None:
        # A-ABORT (or A-P-ABORT) indication from the peer's A-ABORT; close transport.
        assert isinstance(payload, Abort)
        self._events.append(Aborted(payload.source, payload.reason))

    def _aa_4(self, payload: object) -> None:
        # A-P-ABORT indication: the transport went away under an association.
        self._events.append(
            Aborted(
                AbortSource.SERVICE_PROVIDER,
                AbortReason.NOT_SPECIFIED,
                local=True,
                detail="transport connection closed",
            )
        )

    def _aa_5(self, payload: object) -> None:
        # Stop ARTIM: the transport closed while we waited for it to.
        self._stop_artim()

    def _aa_6(self, payload: object) -> None:
        # Ignore the PDU (Sta13: the association no longer exists).
        self._pdata_accepted = False

    def _aa_7(self, payload: object) -> None:
        # Send A-ABORT (Sta13, a PDU that should not come). Only once: after our abort
        # the reader is finished and the rest of the input is dropped.
        self._write_pdu(self._abort_for(payload))

    def _aa_8(self, payload: object) -> None:
        # Send A-ABORT (service-provider source), A-P-ABORT indication, start ARTIM.
        self._pdata_accepted = False
        abort = self._abort_for(payload)
        detail = str(payload) if isinstance(payload, ProtocolError) else _describe(payload)
        self._write_pdu(abort)
        self._events.append(Aborted(abort.source, abort.reason, local=True, detail=detail))
        self._start_artim()

    @staticmethod
    def _abort_for(payload: object) -> Abort:
        if isinstance(payload, ProtocolError):
            return Abort(AbortSource.SERVICE_PROVIDER, payload.abort_reason)
        # A well-formed PDU that is not expected in this state (PS3.8 9.3.8).
        return Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)


@dataclass(frozen=True, slots=True)
class _StreamedMessage:
    """The payload of Evt9 for :meth:`Association.stream_message`."""

    context_id: int


def _describe(payload: object) -> str:
    if payload is None:
        return "unexpected event"
    return f"unexpected {type(payload).__name__} PDU"

"""The DIMSE service of one association on the acceptor side: :class:`Session`.

:class:`aiodicom.scp.StoreSCP` runs one per association, in its own task. It takes the
association's events one at a time: the A-ASSOCIATE-RQ (negotiated against the SCP's
policy), C-ECHO-RQ, C-STORE-RQ with its data set (streamed to the storage writer and
answered once the file is in place), release and abort. Graceful shutdown interrupts a
session only between messages.

A session is part of its server: it registers itself in the server's set of sessions,
reads its stopping flag and hands stored instances to its callback runner (private
state of :class:`~aiodicom.scp.StoreSCP`, shared with this module alone).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from .callbacks import StoredInstance
from .protocol.codes import RejectResult, RejectSource, RejectUserReason
from .protocol.dimse import CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP, OtherCommand, Status
from .protocol.events import (
    Aborted,
    AcceptAssociation,
    AcceptRelease,
    AssociationRequested,
    ConnectionClosed,
    DataSetChunkReceived,
    DimseCommandReceived,
    RejectAssociation,
    ReleaseRequested,
    SendMessage,
)
from .protocol.negotiation import (
    NegotiatedAssociation,
    association_limit_reject,
    negotiate_as_acceptor,
)
from .protocol.pdu import AssociateRJ
from .storage import (
    IncomingFile,
    StoreFailure,
)
from .transport import Connection

if TYPE_CHECKING:
    from .scp import StoreSCP

logger = logging.getLogger("aiodicom.scp")
# One record per stored file, on a logger of its own so that it can be silenced alone
# (the storescp command does, unless -v): formatted and written, a line costs about
# 15 µs, some 5 % of the receiver's CPU per small file.
STORED_LOGGER_NAME = "aiodicom.scp.stored"
stored_logger = logging.getLogger(STORED_LOGGER_NAME)

__all__ = ["STORED_LOGGER_NAME", "Session"]


class Session:
    """The DIMSE service of one association (acceptor side)."""

    def __init__(self, server: StoreSCP, connection: Connection, peer: tuple[str, int] | None):
        self.server = server
        self.connection = connection
        self.peer = peer
        self.name = f"{peer[0]}:{peer[1]}" if peer else "peer"
        self.negotiated: NegotiatedAssociation | None = None
        self.incoming: IncomingFile | None = None
        self.store_request: CStoreRQ | None = None
        self.store_context_id = 0
        # (context, response) of an unsupported request whose data set is being skipped
        self.discarding: tuple[int, OtherCommand | None] | None = None
        self.holds_slot = False
        self._idle_scope = anyio.CancelScope()
        self._waiting_idle = False

    async def run(self) -> None:
        """Serve the association until it ends; a graceful shutdown of the server
        aborts it as soon as it is idle (between messages)."""
        server = self.server
        server._sessions.add(self)
        try:
            # One scope for the whole association (not one per idle wait: that cost
            # more than the rest of the network edge per small data set).
            with self._idle_scope:
                await self._serve_messages()
        finally:
            server._sessions.discard(self)
        if self._idle_scope.cancel_called:
            logger.info("%s: server shutting down; aborting", self.name)
            await self.connection.abort()

    def interrupt_if_idle(self) -> None:
        """Cut the wait for the next message short (graceful shutdown); a session in
        the middle of a message finishes it and stops at its next idle moment."""
        if self._waiting_idle:
            self._idle_scope.cancel()

    async def _serve_messages(self) -> None:
        server = self.server
        config = server.config
        association = self.connection.association
        while True:
            if association.established and self.idle:
                if server._stopping:
                    self._idle_scope.cancel()
                    return
                self._waiting_idle = True
                try:
                    event = await self.connection.next_event(config.idle_timeout)
                finally:
                    self._waiting_idle = False
            else:
                timeout = config.dimse_timeout if association.established else None
                event = await self.connection.next_event(timeout)
            if isinstance(event, ConnectionClosed):
                return
            await self.handle(event)

    @property
    def idle(self) -> bool:
        """Between messages, with nothing received left to act on."""
        return (
            not self.connection.association.in_message
            and not self.connection.association.has_pending_events
            and self.incoming is None
            and self.discarding is None
        )

    async def handle(self, event: object) -> None:
        if isinstance(event, DataSetChunkReceived):
            await self.on_data(event)
        elif isinstance(event, DimseCommandReceived):
            await self.on_command(event)
        elif isinstance(event, AssociationRequested):
            await self.on_association_request(event)
        elif isinstance(event, ReleaseRequested):
            await self.connection.send(AcceptRelease())
        elif isinstance(event, Aborted):
            self.server.stats.aborted_associations += 1
            level = logging.WARNING if event.local else logging.INFO
            logger.log(
                level,
                "%s: association aborted (source %d, reason %d)%s",
                self.name,
                event.source,
                event.reason,
                f": {event.detail}" if event.detail else "",
            )
            await self.discard_incoming()

    async def on_association_request(self, event: AssociationRequested) -> None:
        server = self.server
        request = event.request
        stats = server.stats
        if not server.peer_allowed(self.peer):
            stats.rejected_associations += 1
            logger.warning("%s: association refused: address not allowed", self.name)
            reject = AssociateRJ(
                RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectUserReason.NO_REASON
            )
            await self.connection.send(RejectAssociation(reject))
            return
        if stats.active_associations >= server.config.max_associations:
            stats.rejected_associations += 1
            logger.warning(
                "%s: association from %r refused: %d associations already",
                self.name,
                request.calling_ae_title,
                stats.active_associations,
            )
            await self.connection.send(RejectAssociation(association_limit_reject()))
            return
        answer = negotiate_as_acceptor(request, server.policy)
        if isinstance(answer, AssociateRJ):
            stats.rejected_associations += 1
            logger.warning(
                "%s: association from %r to %r rejected (result %d, source %d, reason %d)",
                self.name,
                request.calling_ae_title,
                request.called_ae_title,
                answer.result,
                answer.source,
                answer.reason,
            )
            await self.connection.send(RejectAssociation(answer))
            return
        accept, negotiated = answer
        self.negotiated = negotiated
        stats.associations += 1
        stats.active_associations += 1
        self.holds_slot = True
        self.name = f"{request.calling_ae_title}@{self.name}"
        logger.info(
            "%s: association accepted (%d of %d contexts)",
            self.name,
            len(negotiated.contexts),
            len(request.presentation_contexts),
        )
        await self.connection.send(AcceptAssociation(accept))

    async def on_command(self, event: DimseCommandReceived) -> None:
        command = event.command
        if isinstance(command, CEchoRQ):
            self.server.stats.echoes += 1
            echo_response = CEchoRSP(
                message_id_being_responded_to=command.message_id,
                status=Status.SUCCESS,
                affected_sop_class_uid=_echoable_uid(command.affected_sop_class_uid),
            )
            await self.connection.send(SendMessage(event.context_id, echo_response))
        elif isinstance(command, CStoreRQ):
            self.begin_store(event.context_id, command)
        elif isinstance(command, OtherCommand):
            logger.warning("%s: unsupported DIMSE command 0x%04X", self.name, command.command_field)
            response = _unrecognized_operation_response(command)
            if command.has_dataset:
                self.discarding = (event.context_id, response)
            elif response is not None:
                await self.connection.send(SendMessage(event.context_id, response))
        else:
            # A response where a request belongs: we never sent a request.
            logger.warning("%s: unexpected %s; aborting", self.name, type(command).__name__)
            await self.connection.abort()

    def begin_store(self, context_id: int, command: CStoreRQ) -> None:
        assert self.negotiated is not None
        context = self.negotiated.contexts[context_id]
        self.store_request = command
        self.store_context_id = context_id
        self.incoming = self.server.storage.begin(
            sop_class_uid=command.affected_sop_class_uid,
            sop_instance_uid=command.affected_sop_instance_uid,
            transfer_syntax_uid=context.transfer_syntax,
            calling_ae_title=self.negotiated.calling_ae_title,
        )

    async def on_data(self, event: DataSetChunkReceived) -> None:
        if self.incoming is not None:
            await self.incoming.write(event.data)
            if event.last:
                await self.finish_store()
        elif self.discarding is not None and event.last:
            context_id, response = self.discarding
            self.discarding = None
            if response is not None:
                await self.connection.send(SendMessage(context_id, response))

    async def finish_store(self) -> None:
        server = self.server
        incoming, request = self.incoming, self.store_request
        assert incoming is not None and request is not None and self.negotiated is not None
        if not self.connection.association.can_send_data:
            # The association ended (an A-ABORT in the same read) after the last
            # fragment arrived: no response can be sent, so nothing is stored either;
            # the peer will send it again.
            logger.warning(
                "%s: %s arrived but the association is gone; not stored",
                self.name,
                request.affected_sop_instance_uid,
            )
            await self.discard_incoming()
            self.store_request = None
            return
        self.incoming = None
        error_comment: str | None = None
        try:
            stored = await incoming.commit()
        except StoreFailure as failure:
            status = failure.status
            error_comment = _error_comment(failure.message)
            server.stats.failed_stores += 1
            server.stats.failures_by_status[status] = (
                server.stats.failures_by_status.get(status, 0) + 1
            )
            logger.warning(
                "%s: store of %s failed with 0x%04X: %s",
                self.name,
                request.affected_sop_instance_uid,
                status,
                failure.message,
            )
        else:
            status = Status.SUCCESS
            server.stats.stored += 1
            server.stats.bytes_stored += stored.size
            stored_logger.info("%s: stored %s", self.name, stored.location)
            runner = server._runner
            if runner is not None and runner.active:
                context = self.negotiated.contexts[self.store_context_id]
                await runner.submit(
                    StoredInstance(
                        path=stored.path,
                        sop_class_uid=request.affected_sop_class_uid,
                        sop_instance_uid=request.affected_sop_instance_uid,
                        transfer_syntax_uid=context.transfer_syntax,
                        calling_ae_title=self.negotiated.calling_ae_title,
                        called_ae_title=self.negotiated.called_ae_title,
                        peer_address=self.peer,
                        size=stored.size,
                        replaced=stored.replaced,
                    )
                )
        response = CStoreRSP(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=_echoable_uid(request.affected_sop_class_uid),
            affected_sop_instance_uid=_echoable_uid(request.affected_sop_instance_uid),
            error_comment=error_comment,
        )
        self.store_request = None
        await self.connection.send(SendMessage(self.store_context_id, response))

    async def discard_incoming(self) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is not None:
            await incoming.abort()

    def release_slot(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.server.stats.active_associations -= 1


def _error_comment(message: str) -> str:
    """An Error Comment (0000,0902) value: LO, at most 64 characters (PS3.5 Table 6.2-1),
    printable ASCII without the backslash that would split it into several values."""
    cleaned = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in message)
    return cleaned[:64]


def _echoable_uid(uid: str) -> str | None:
    """A UID from the request, echoed in the response only if it can be encoded (UI is
    ASCII); a request whose UID was not ASCII gets a response without it."""
    return uid if uid.isascii() else None


def _unrecognized_operation_response(command: OtherCommand) -> OtherCommand | None:
    """The response with status 0x0211 (unrecognized operation, PS3.7 C.4.2), if any.

    Only requests with a Message ID get one; a C-CANCEL-RQ or a stray response does not.
    """
    is_response = bool(command.command_field & 0x8000)
    if command.message_id is None or is_response:
        return None
    elements = {
        _MESSAGE_ID_BEING_RESPONDED_TO: command.message_id.to_bytes(2, "little"),
        _STATUS: int(Status.UNRECOGNIZED_OPERATION).to_bytes(2, "little"),
    }
    if _AFFECTED_SOP_CLASS_UID in command.elements:
        elements[_AFFECTED_SOP_CLASS_UID] = command.elements[_AFFECTED_SOP_CLASS_UID]
    return OtherCommand(
        command_field=command.command_field | 0x8000,
        message_id=None,
        has_dataset=False,
        elements=elements,
    )


# Command element numbers (group 0000), PS3.7 E.1.
_AFFECTED_SOP_CLASS_UID = 0x0002
_MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
_STATUS = 0x0900

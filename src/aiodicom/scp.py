"""The Storage SCP: an anyio server that answers C-ECHO and stores C-STORE data sets.

Use it three ways::

    async with StoreSCP(ae_title="MY_AE", port=11112, data_dir="incoming") as scp:
        ...                                   # listening while the block runs

    await StoreSCP(...).serve_forever()       # a service whose only job is this

    async with anyio.create_task_group() as tg:
        port = await tg.start(scp.serve)      # embedded in another application's loop

One task serves each association. Each data set is streamed to a temporary file and
renamed into place before the success response is sent (see :mod:`aiodicom.storage`);
callbacks run afterwards (see :mod:`aiodicom.callbacks`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup, TaskStatus
from anyio.streams.tls import TLSListener

from .asyncio_transport import ProtocolListener, is_asyncio
from .callbacks import CallbackRunner, DatasetCallback, EventCallback, StoredInstance
from .protocol.association import Association
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
    AcceptorPolicy,
    NegotiatedAssociation,
    UserIdentityVerifier,
    association_limit_reject,
    negotiate_as_acceptor,
)
from .protocol.pdu import AssociateRJ
from .protocol.state import Role
from .storage import (
    DuplicatePolicy,
    IncomingFile,
    StorageConfig,
    StorageSortKey,
    StorageWriter,
    StoreFailure,
)
from .transport import Connection, DimseTimeout

logger = logging.getLogger("aiodicom.scp")


@dataclass(frozen=True)
class SCPConfig:
    """Everything about the SCP's behaviour that is not where it listens or stores.

    Timeouts are in seconds; ``None`` disables one (not recommended on a network).
    """

    # Associations served at once; one more is refused with A-ASSOCIATE-RJ
    # transient / presentation / local-limit-exceeded (PS3.8 9.3.4: 2, 3, 2).
    max_associations: int = 32
    # PS3.8 9.1.4: ARTIM bounds the wait for an A-ASSOCIATE-RQ after connect, and for
    # the peer to close after a release or abort.
    artim_timeout: float | None = 30.0
    # Wait for the next fragment of a message being received.
    dimse_timeout: float | None = 30.0
    # Wait for the next message on an idle established association.
    idle_timeout: float | None = 60.0
    # Graceful shutdown: how long in-flight stores and callbacks may take to finish.
    shutdown_timeout: float = 10.0
    require_called_ae_title: bool = False
    allowed_calling_ae_titles: frozenset[str] | None = None
    # Accept any abstract syntax proposed (not only Verification and storage classes).
    accept_any_sop_class: bool = False
    # Our Maximum Length (PS3.8 D.1): the largest P-DATA-TF body we accept.
    max_pdu_length: int = 1_048_576
    # Cap on association-phase PDUs (A-ASSOCIATE-RQ...), as DCMTK's 1 MiB.
    max_association_pdu_length: int = 1_048_576
    # Asynchronous operations window we accept (PS3.7 D.3.3.3).
    max_operations_performed: int = 16
    fsync: bool = False
    # File writes: None writes data sets up to 1 MiB without fsync in the event loop and
    # the rest in worker threads; True always in threads (a filesystem that may stall,
    # e.g. NFS); False always in the loop (see aiodicom.storage.writer).
    write_in_threads: bool | None = None
    duplicates: DuplicatePolicy = DuplicatePolicy.REPLACE
    max_pending_callbacks: int = 32
    tcp_quickack: bool = True
    # On asyncio (and uvloop), serve plain TCP through an asyncio Protocol rather than
    # anyio's socket streams: the same behaviour, about half the cost per small data
    # set (see aiodicom.asyncio_transport). Trio and TLS always use anyio's streams.
    asyncio_protocol: bool = True
    # SO_REUSEPORT: several processes serve one port (see aiodicom.workers).
    reuse_port: bool = False
    # Remove temporary files left by a crash when serving starts. Turn off only when
    # another process sharing the data directory is already running (workers).
    cleanup_on_start: bool = True
    # Access control. Peers outside these networks (e.g. ("10.0.0.0/8", "::1/128")) are
    # refused with A-ASSOCIATE-RJ 1/1/1 (permanent, service-user, no reason given).
    allowed_networks: tuple[str, ...] | None = None
    # User Identity negotiation (PS3.7 D.3.3.7): called with the identity and the
    # calling AE title; True or bytes (a server response) accepts, False/None refuses
    # with A-ASSOCIATE-RJ 1/2/1. With require_user_identity, peers without one are
    # refused the same way.
    user_identity_verifier: UserIdentityVerifier | None = None
    require_user_identity: bool = False
    # DICOM TLS (PS3.15 B.9 / BCP 195): an ssl.SSLContext for the server side, e.g. from
    # aiodicom.tls.server_context(); None serves plain TCP.
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    tls_handshake_timeout: float = 30.0


@dataclass
class SCPStatistics:
    """Counters since the server started."""

    associations: int = 0
    rejected_associations: int = 0
    aborted_associations: int = 0
    echoes: int = 0
    stored: int = 0
    failed_stores: int = 0
    bytes_stored: int = 0
    active_associations: int = 0
    failures_by_status: dict[int, int] = field(default_factory=dict)


class StoreSCP:
    """A DICOM Storage SCP (C-ECHO and C-STORE), asyncio- and trio-ready through anyio."""

    def __init__(
        self,
        ae_title: str = "AIODICOM",
        host: str | None = "0.0.0.0",
        port: int = 11112,
        data_dir: str | os.PathLike[str] = ".",
        sort_by: StorageSortKey | str = StorageSortKey.PATIENT,
        callbacks: Sequence[DatasetCallback] | None = None,
        *,
        event_callbacks: Sequence[EventCallback] | None = None,
        config: SCPConfig | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self.requested_port = port
        self.port = port
        self.data_dir = Path(data_dir or ".")
        self.sort_by = StorageSortKey(sort_by)
        self.callbacks = list(callbacks or ())
        self.event_callbacks = list(event_callbacks or ())
        self.config = config or SCPConfig()
        self.stats = SCPStatistics()
        self.policy = AcceptorPolicy(
            ae_title=ae_title,
            require_called_ae_title=self.config.require_called_ae_title,
            allowed_calling_ae_titles=self.config.allowed_calling_ae_titles,
            max_pdu_length=self.config.max_pdu_length,
            max_operations_performed=self.config.max_operations_performed,
            user_identity_verifier=self.config.user_identity_verifier,
            require_user_identity=self.config.require_user_identity,
        )
        self._allowed_networks = (
            None
            if self.config.allowed_networks is None
            else tuple(
                ipaddress.ip_network(net, strict=False) for net in self.config.allowed_networks
            )
        )
        if self.config.accept_any_sop_class:
            self.policy = replace(self.policy, abstract_syntaxes=None)
        self.storage = StorageWriter(
            StorageConfig(
                data_dir=self.data_dir,
                sort_by=self.sort_by,
                fsync=self.config.fsync,
                write_in_threads=self.config.write_in_threads,
                duplicates=self.config.duplicates,
            )
        )
        self._stop_requested: anyio.Event | None = None
        self._stopping = False
        self._sessions: set[_Session] = set()
        self._runner: CallbackRunner | None = None
        self._own_task_group: TaskGroup | None = None
        self._own_task_group_cm: Any = None

    # --- Life cycle ---------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until :meth:`shutdown` is called or the task is cancelled.

        Reports the bound port through ``task_status`` (anyio's convention), so
        ``port = await task_group.start(scp.serve)`` returns once connections are taken.
        """
        self._stop_requested = anyio.Event()
        self._stopping = False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listener: Listener[Any] = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self.requested_port, reuse_port=self.config.reuse_port
        )
        self.port = int(listener.extra(SocketAttribute.local_port))
        if self.config.ssl_context is None and self.config.asyncio_protocol and is_asyncio():
            listener = ProtocolListener(listener)
        elif self.config.ssl_context is not None:
            # standard_compatible=False: DICOM peers commonly close without a TLS
            # close_notify; that must not count as an error.
            listener = TLSListener(
                listener,
                self.config.ssl_context,
                standard_compatible=False,
                handshake_timeout=self.config.tls_handshake_timeout,
            )
        removed = await self.storage.start_cleanup() if self.config.cleanup_on_start else 0
        if removed:
            logger.warning("removed %d temporary files left by an earlier run", removed)
        logger.info("%s listening on %s port %d", self.ae_title, self.host or "*", self.port)
        try:
            async with anyio.create_task_group() as callback_group:
                self._runner = CallbackRunner(
                    callback_group,
                    callbacks=self.callbacks,
                    event_callbacks=self.event_callbacks,
                    max_pending=self.config.max_pending_callbacks,
                )
                async with anyio.create_task_group() as association_group:
                    async with anyio.create_task_group() as accept_group:
                        accept_group.start_soon(
                            listener.serve, self._serve_connection, association_group
                        )
                        task_status.started(self.port)
                        await self._stop_requested.wait()
                        accept_group.cancel_scope.cancel()
                    await listener.aclose()
                    # Graceful shutdown: idle associations are aborted now, busy ones
                    # after their current message; whatever is left at the deadline is
                    # cancelled (their temporary files are removed on the way out).
                    self._stopping = True
                    for session in list(self._sessions):
                        session.interrupt_if_idle()
                    association_group.cancel_scope.deadline = (
                        anyio.current_time() + self.config.shutdown_timeout
                    )
                callback_group.cancel_scope.deadline = (
                    anyio.current_time() + self.config.shutdown_timeout
                )
        finally:
            await listener.aclose()
            logger.info(
                "%s stopped: %d stored, %d failed, %d associations",
                self.ae_title,
                self.stats.stored,
                self.stats.failed_stores,
                self.stats.associations,
            )

    def shutdown(self) -> None:
        """Ask :meth:`serve` to stop gracefully (call from the event loop's thread)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def serve_forever(self) -> None:
        """Serve until cancelled (Ctrl-C) or :meth:`shutdown`."""
        await self.serve()

    async def __aenter__(self) -> StoreSCP:
        self._own_task_group_cm = anyio.create_task_group()
        self._own_task_group = await self._own_task_group_cm.__aenter__()
        try:
            await self._own_task_group.start(self.serve)
        except BaseException:
            await self._own_task_group_cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self.shutdown()
        result: bool | None = await self._own_task_group_cm.__aexit__(exc_type, exc, traceback)
        return result

    def peer_allowed(self, peer: tuple[str, int] | None) -> bool:
        """True when the peer's address is in ``SCPConfig.allowed_networks`` (or no list)."""
        if self._allowed_networks is None:
            return True
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer[0].split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allowed_networks)

    @property
    def callback_failures(self) -> int:
        return self._runner.failures if self._runner is not None else 0

    # --- One association ------------------------------------------------------------------------

    async def _serve_connection(self, stream: ByteStream) -> None:
        peer = _peer_address(stream)
        association = Association(
            Role.ACCEPTOR,
            artim_timeout=self.config.artim_timeout or float("inf"),
            max_association_pdu_length=self.config.max_association_pdu_length,
        )
        connection = Connection(stream, association, quickack=self.config.tcp_quickack)
        session = _Session(self, connection, peer)
        try:
            connection.start()
            await session.run()
        except DimseTimeout as timeout:
            logger.warning("%s: %s; aborting the association", session.name, timeout)
            self.stats.aborted_associations += 1
            await connection.abort()
        except anyio.get_cancelled_exc_class():
            # Shutdown deadline or cancelled host application: abort politely.
            with anyio.CancelScope(shield=True):
                await session.discard_incoming()
                await connection.abort()
            raise
        except Exception:
            logger.exception("%s: unexpected error; aborting the association", session.name)
            await connection.abort()
        finally:
            with anyio.CancelScope(shield=True):
                await session.discard_incoming()
                await connection.aclose()
                session.release_slot()


async def serve_until_signalled(
    scp: StoreSCP, *, on_started: Callable[[StoreSCP], None] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully.

    Signals can only be received in the main thread; elsewhere this serves until
    cancelled. ``on_started`` is called once the port is listening.
    """
    async with anyio.create_task_group() as signal_group:
        if threading.current_thread() is threading.main_thread():
            signal_group.start_soon(_shutdown_on_signal, scp)
        async with anyio.create_task_group() as server_group:
            await server_group.start(scp.serve)
            if on_started is not None:
                on_started(scp)
        # serve() has returned: the shutdown is complete; stop listening for signals.
        signal_group.cancel_scope.cancel()


async def _shutdown_on_signal(scp: StoreSCP) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            logger.info("signal %d received; shutting down", received)
            scp.shutdown()
            return


class _Session:
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
            logger.info("%s: stored %s", self.name, stored.location)
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


def _peer_address(stream: ByteStream) -> tuple[str, int] | None:
    address = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None

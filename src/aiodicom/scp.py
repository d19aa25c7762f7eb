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
from .callbacks import CallbackRunner, DatasetCallback, EventCallback
from .protocol.association import Association
from .protocol.negotiation import (
    AcceptorPolicy,
    UserIdentityVerifier,
)
from .protocol.state import Role
from .scp_session import Session
from .storage import (
    DuplicatePolicy,
    StorageConfig,
    StorageSortKey,
    StorageWriter,
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
        self._sessions: set[Session] = set()
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
        session = Session(self, connection, peer)
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


def _peer_address(stream: ByteStream) -> tuple[str, int] | None:
    address = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None

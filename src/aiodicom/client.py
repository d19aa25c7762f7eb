"""The Storage SCU: C-ECHO and C-STORE as association requestor, over anyio.

::

    async with aiodicom.associate("pacs", 104, called_ae="PACS",
                                  contexts=contexts_for_files(paths), window=16) as assoc:
        await assoc.echo()                      # needs a Verification context
        result = await assoc.store("ct1.dcm")   # a file is sent from disk, as it is
        results = await assoc.store_many(paths) # pipelined up to the agreed window

    results = await aiodicom.store_files("pacs", 104, paths, associations=4)

How it is put together:

* One :class:`~aiodicom.transport.Connection` joins the sans-IO association to the
  stream. A reader task owns the receive side for the whole association: it keeps
  consuming whatever the peer sends (responses, an A-ABORT), so the peer can never be
  blocked writing to us while we are blocked writing to it.
* Requests are written by the caller's task under one lock, a whole message at a time
  (PS3.8 9.3.5: the PDVs of different messages are never interleaved). A file's data
  set is read in 1 MiB buffers straight behind its PDU headers
  (:class:`~aiodicom.scu_files.FileMessageReader`): small files inline, large ones in a
  worker thread, so a 2 GB file never sits in memory.
* Pipelining: up to the negotiated window (PS3.7 D.3.3.3, max operations invoked) of
  C-STORE-RQs are outstanding at once; responses are matched to requests by Message ID
  Being Responded To (PS3.7 9.3.1.2) here, not in the sans-IO core.
* Timeouts: ``acse_timeout`` bounds association setup and release, ``dimse_timeout``
  bounds each write and the wait for a response while nothing arrives from the peer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
from anyio.abc import ByteStream
from pydicom.dataset import Dataset

from .asyncio_transport import connect_tcp as asyncio_connect_tcp
from .asyncio_transport import is_asyncio
from .protocol.association import Association
from .protocol.codes import ContextResult
from .protocol.dimse import (
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    CStoreRSP,
    DimseCommand,
    Priority,
)
from .protocol.errors import RemoteProtocolError
from .protocol.events import (
    Aborted,
    AcceptRelease,
    AssociationAccepted,
    AssociationRejected,
    ConnectionClosed,
    DimseCommandReceived,
    ReleaseRequested,
    RequestAssociation,
    RequestRelease,
    SendMessage,
)
from .protocol.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    NegotiatedAssociation,
    NegotiatedContext,
    build_associate_rq,
    interpret_associate_ac,
)
from .protocol.state import Role
from .protocol.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
)
from .scu_files import (
    DEFAULT_CHUNK_SIZE,
    UNCOMPRESSED_SYNTAXES,
    AssociationAbortedError,
    AssociationRejectedError,
    ClientError,
    DicomFile,
    FileMessageReader,
    NoPresentationContextError,
    NotDicomFileError,
    ProposedContext,
    StoreItem,
    StoreResult,
    contexts_for_files,
    encode_dataset,
    plan_jobs,
    read_dicom_file,
    unsent_result,
    wire_length,
)
from .transport import Connection, DimseTimeout

logger = logging.getLogger("aiodicom.client")

__all__ = [
    "AssociationAbortedError",
    "AssociationRejectedError",
    "ClientAssociation",
    "ClientError",
    "NoPresentationContextError",
    "StoreResult",
    "associate",
    "store_files",
]

# The asynchronous operations window we propose by default (PS3.7 D.3.3.3). Harmless to
# peers without asynchronous operations: they answer 1 or leave the item out (= 1).
DEFAULT_WINDOW = 16
# Data sets larger than this are read in a worker thread; smaller ones inline, where a
# thread hop would cost more than the read (page-cache reads of a few KiB take µs).
_INLINE_READ_LIMIT = 256 * 1024
# PS3.7 D.3.3.3: 0 is "unlimited"; we still bound what we keep in flight.
_UNLIMITED_WINDOW_CAP = 256
# PS3.7 9.1.1.1 / E.1: Message ID is a US; 0 is avoided (some peers treat it as unset).
_MAX_MESSAGE_ID = 0xFFFF
_VERIFICATION_CONTEXT = ProposedContext(
    VERIFICATION_SOP_CLASS, (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
)


# --- The stream wrapper: write lock and receive activity ------------------------------------------


class _ClientStream(ByteStream):
    """The connected stream, with the two things the client adds to it.

    Sends are serialised: a message is written by one task while it holds ``lock``
    (through :meth:`send_locked`), and any other send (the Connection's flush of an
    A-ABORT, a release) waits for the lock. ``last_receive`` is when bytes last came from
    the peer: the DIMSE timeout counts from it.
    """

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.lock = anyio.Lock()
        self.last_receive = anyio.current_time()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        self.last_receive = anyio.current_time()
        return data

    async def send(self, item: bytes) -> None:
        async with self.lock:
            await self.inner.send(item)

    async def send_locked(self, item: bytes | memoryview) -> None:
        """Send while the caller already holds ``lock``."""
        await self.inner.send(item)  # type: ignore[arg-type]  # memoryview is fine

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes


@dataclass(eq=False)
class _Pending:
    """A request sent and not yet answered."""

    message_id: int
    done: anyio.Event
    sent_at: float
    response: CStoreRSP | CEchoRSP | None = None


# --- The association ---------------------------------------------------------------------------


class ClientAssociation:
    """An established association on which we are the SCU. Made by :func:`associate`."""

    def __init__(
        self,
        connection: Connection,
        stream: _ClientStream,
        negotiated: NegotiatedAssociation,
        *,
        dimse_timeout: float | None,
        acse_timeout: float | None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.negotiated = negotiated
        window = negotiated.max_operations_invoked
        # PS3.7 D.3.3.3: how many operations we may have outstanding; 0 = unlimited.
        self.window = window if window > 0 else _UNLIMITED_WINDOW_CAP
        self._connection = connection
        self._stream = stream
        self._dimse_timeout = dimse_timeout
        self._acse_timeout = acse_timeout
        self._chunk_size = chunk_size
        self._pending: dict[int, _Pending] = {}
        self._next_message_id = 1
        self._failure: ClientError | None = None
        self._changed = anyio.Event()  # set (and replaced) whenever a response arrives
        self._closed = anyio.Event()
        self._broken = False  # a message was cut short: nothing more may be written
        # The most requests that were outstanding at once (how much pipelining happened).
        self.peak_outstanding = 0

    # --- Services --------------------------------------------------------------------------

    @property
    def peer_max_pdu_length(self) -> int:
        return self.negotiated.peer_max_pdu_length

    async def echo(self) -> int:
        """C-ECHO (PS3.4 Annex A): the peer's status, 0x0000 when it answers."""
        context = self._find_context(VERIFICATION_SOP_CLASS, None)
        if context is None:
            raise NoPresentationContextError(VERIFICATION_SOP_CLASS, None)
        await self._wait_for_slot()
        pending = self._register()
        await self._send_small(context.context_id, CEchoRQ(message_id=pending.message_id), None)
        response = await self._wait_for(pending)
        return response.status

    async def store(self, item: StoreItem, *, priority: int = Priority.MEDIUM) -> StoreResult:
        """C-STORE one file (a path or :class:`DicomFile`) or pydicom Dataset.

        Raises :class:`NoPresentationContextError` when no accepted context carries it,
        :class:`NotDicomFileError` for a path that cannot be sent, and the association's
        errors; a failure *status* from the peer is a result, not an exception.
        """
        results = await self._store_all([item], priority=priority, report=None, strict=True)
        return results[0]

    async def store_many(
        self,
        items: Sequence[StoreItem],
        *,
        priority: int = Priority.MEDIUM,
        on_result: Callable[[StoreResult], None] | None = None,
    ) -> list[StoreResult]:
        """C-STORE every item, keeping up to :attr:`window` requests outstanding.

        Returns one result per item, in order. An item that cannot be sent (no context,
        not DICOM) gets a result with ``error`` and the others go on. ``on_result`` is
        called as each result is known (for progress). An association failure raises
        (:class:`AssociationAbortedError`, :class:`DimseTimeout`) after reporting, through
        ``on_result``, every result received before it.
        """
        report = None if on_result is None else (lambda _index, result: on_result(result))
        return await self._store_all(items, priority=priority, report=report, strict=False)

    async def _store_all(
        self,
        items: Sequence[StoreItem],
        *,
        priority: int,
        report: Callable[[int, StoreResult], None] | None,
        strict: bool,
    ) -> list[StoreResult]:
        results: list[StoreResult | None] = [None] * len(items)
        # (index, request, its result without a status) in the order sent
        waiting: list[tuple[int, _Pending, StoreResult]] = []

        def finish(index: int, result: StoreResult) -> None:
            results[index] = result
            if report is not None:
                report(index, result)

        def collect_answered() -> None:
            still = []
            for index, pending, unanswered in waiting:
                response = pending.response
                if response is None:
                    still.append((index, pending, unanswered))
                else:
                    finish(
                        index,
                        replace(
                            unanswered,
                            status=response.status,
                            error_comment=response.error_comment,
                        ),
                    )
            waiting[:] = still

        try:
            for index, item in enumerate(items):
                try:
                    message = self._prepare(item)
                except (ValueError, NoPresentationContextError, OSError) as error:
                    # ValueError covers NotDicomFileError and a Dataset without UIDs.
                    if strict:
                        raise
                    finish(index, unsent_result(item, error))
                    continue
                await self._wait_for_slot()
                collect_answered()
                pending = self._register()
                command = CStoreRQ(
                    message_id=pending.message_id,
                    affected_sop_class_uid=message.sop_class_uid,
                    affected_sop_instance_uid=message.sop_instance_uid,
                    priority=priority,
                )
                if message.dicom_file is not None:
                    await self._send_file(message.context_id, command, message.dicom_file)
                else:
                    await self._send_small(message.context_id, command, message.encoded)
                unanswered = StoreResult(
                    path=message.dicom_file.path if message.dicom_file else None,
                    sop_class_uid=message.sop_class_uid,
                    sop_instance_uid=message.sop_instance_uid,
                    status=None,
                    size=message.size,
                )
                waiting.append((index, pending, unanswered))
            for _, pending, _ in list(waiting):
                await self._wait_for(pending)
        finally:
            collect_answered()
        return [result for result in results if result is not None]

    # --- Choosing the context and preparing the message -------------------------------------

    def _find_context(
        self, sop_class_uid: str, transfer_syntax_uid: str | None
    ) -> NegotiatedContext | None:
        return self.negotiated.find_context(sop_class_uid, transfer_syntax_uid)

    def _prepare(self, item: StoreItem) -> _Message:
        if isinstance(item, Dataset):
            return self._prepare_dataset(item)
        dicom_file = item if isinstance(item, DicomFile) else read_dicom_file(item)
        # A file travels in its own transfer syntax, as it is (no silent transcoding).
        context = self._find_context(dicom_file.sop_class_uid, dicom_file.transfer_syntax_uid)
        if context is None:
            raise NoPresentationContextError(
                dicom_file.sop_class_uid, dicom_file.transfer_syntax_uid
            )
        return _Message(
            context_id=context.context_id,
            sop_class_uid=dicom_file.sop_class_uid,
            sop_instance_uid=dicom_file.sop_instance_uid,
            dicom_file=dicom_file,
            encoded=None,
            size=dicom_file.dataset_length,
        )

    def _prepare_dataset(self, dataset: Dataset) -> _Message:
        sop_class = str(dataset.get("SOPClassUID", "") or "")
        sop_instance = str(dataset.get("SOPInstanceUID", "") or "")
        if not sop_class or not sop_instance:
            raise ValueError("the data set has no SOP Class UID or SOP Instance UID")
        file_meta = getattr(dataset, "file_meta", None)
        original = str(file_meta.get("TransferSyntaxUID", "") or "") if file_meta else ""
        if original and original not in UNCOMPRESSED_SYNTAXES:
            # Encapsulated pixel data can only go in the syntax it was compressed with.
            candidates: tuple[str, ...] = (original,)
        else:
            preferred = (original,) if original else ()
            candidates = preferred + tuple(s for s in UNCOMPRESSED_SYNTAXES if s != original)
        for syntax in candidates:
            context = self._find_context(sop_class, syntax)
            if context is not None:
                encoded = encode_dataset(dataset, syntax)
                return _Message(
                    context_id=context.context_id,
                    sop_class_uid=sop_class,
                    sop_instance_uid=sop_instance,
                    dicom_file=None,
                    encoded=encoded,
                    size=len(encoded),
                )
        raise NoPresentationContextError(sop_class, original or None)

    # --- Writing -------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._broken or not self._connection.association.established:
            raise AssociationAbortedError(0, 0, local=True, detail="the association is closed")

    async def _send_small(
        self, context_id: int, command: DimseCommand, dataset: bytes | None
    ) -> None:
        self._check_usable()
        # The bytes are produced and written in one send under the stream's lock.
        with self._write_deadline():
            await self._connection.send(SendMessage(context_id, command, dataset))

    async def _send_file(self, context_id: int, command: CStoreRQ, dicom_file: DicomFile) -> None:
        self._check_usable()
        association = self._connection.association
        stream = self._stream
        in_thread = dicom_file.dataset_length > _INLINE_READ_LIMIT
        with open(dicom_file.path, "rb", buffering=0) as file:
            file.seek(dicom_file.dataset_offset)
            async with stream.lock:
                self._check_usable()
                pdus = association.stream_message(
                    context_id,
                    command,
                    wire_length(dicom_file.dataset_length),
                    anyio.current_time(),
                )
                reader = FileMessageReader(
                    file, pdus, dicom_file.dataset_length, chunk_size=self._chunk_size
                )
                try:
                    while True:
                        if in_thread:
                            chunk = await anyio.to_thread.run_sync(reader.next_buffer)
                        else:
                            chunk = reader.next_buffer()
                        if chunk is None:
                            break
                        if not association.established:
                            # The peer aborted mid-way: the reader reports why.
                            raise self._failure or AssociationAbortedError(
                                0, 0, local=True, detail="the association closed while sending"
                            )
                        with self._write_deadline():
                            await stream.send_locked(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
                    self._broken = True
                    with anyio.CancelScope(shield=True):
                        await self._connection.aclose()
                    raise self._failure or AssociationAbortedError(
                        2, 0, local=True, detail=f"connection lost while sending: {error!r}"
                    ) from error
                except BaseException:
                    # Part of a message is on the wire: nothing else may follow it.
                    self._broken = True
                    with anyio.CancelScope(shield=True):
                        await self._connection.aclose()
                    raise

    @contextlib.contextmanager
    def _write_deadline(self) -> Any:
        if self._dimse_timeout is None:
            yield
            return
        try:
            with anyio.fail_after(self._dimse_timeout):
                yield
        except TimeoutError:
            self._broken = True
            raise DimseTimeout(
                f"the peer took no data for {self._dimse_timeout} s (DIMSE timeout)"
            ) from None

    # --- Message IDs, the window and responses -------------------------------------------

    def _register(self) -> _Pending:
        message_id = self._next_message_id
        while message_id in self._pending:
            message_id = message_id % _MAX_MESSAGE_ID + 1
        self._next_message_id = message_id % _MAX_MESSAGE_ID + 1
        pending = _Pending(message_id, anyio.Event(), anyio.current_time())
        self._pending[message_id] = pending
        self.peak_outstanding = max(self.peak_outstanding, len(self._pending))
        return pending

    async def _wait_for_slot(self) -> None:
        while len(self._pending) >= self.window:
            oldest = min(self._pending.values(), key=lambda pending: pending.sent_at)
            await self._wait_until(self._changed, since=oldest.sent_at)

    async def _wait_for(self, pending: _Pending) -> CStoreRSP | CEchoRSP:
        await self._wait_until(pending.done, since=pending.sent_at)
        if pending.response is None:
            assert self._failure is not None
            raise self._failure
        return pending.response

    async def _wait_until(self, event: anyio.Event, *, since: float) -> None:
        """Wait for ``event``; fail when the association fails or the peer is silent
        for ``dimse_timeout`` (counted from ``since`` or the last bytes received)."""
        while not event.is_set():
            if self._failure is not None:
                raise self._failure
            timeout = self._dimse_timeout
            if timeout is None:
                await event.wait()
                continue
            deadline = max(since, self._stream.last_receive) + timeout
            with anyio.move_on_at(deadline):
                await event.wait()
            if (
                not event.is_set()
                and anyio.current_time() >= max(since, self._stream.last_receive) + timeout
            ):
                error = DimseTimeout(f"no response from the peer in {timeout} s (DIMSE timeout)")
                self._fail(AssociationAbortedError(0, 0, local=True, detail=str(error)))
                with anyio.CancelScope(shield=True):
                    await self._connection.abort()
                raise error

    def _fail(self, error: ClientError) -> None:
        if self._failure is None:
            self._failure = error
        for pending in self._pending.values():
            pending.done.set()
        self._pending.clear()
        self._signal_change()

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _read_events(self) -> None:
        """The reader task: every event of the association, until the transport closes."""
        connection = self._connection
        try:
            while True:
                event = await connection.next_event(None)
                if isinstance(event, DimseCommandReceived):
                    await self._on_command(event)
                elif isinstance(event, Aborted):
                    self._fail(
                        AssociationAbortedError(
                            event.source, event.reason, local=event.local, detail=event.detail
                        )
                    )
                elif isinstance(event, ReleaseRequested):
                    # Either side may release (PS3.8 Table 9-10, Evt12 in Sta6): agree,
                    # but what is still outstanding will never be answered.
                    self._fail(AssociationAbortedError(0, 0, local=True, detail="peer released"))
                    await connection.send(AcceptRelease())
                elif isinstance(event, ConnectionClosed):
                    if self._failure is None and self._pending:
                        self._fail(
                            AssociationAbortedError(
                                2, 0, local=True, detail="transport connection closed"
                            )
                        )
                    return
                # AssociationReleased is followed by ConnectionClosed; data-set chunks
                # only follow commands we refuse below.
        except Exception as error:  # reported to every waiter instead
            logger.debug("reader stopped: %r", error)
            self._fail(AssociationAbortedError(2, 0, local=True, detail=str(error)))
        finally:
            self._fail(AssociationAbortedError(2, 0, local=True, detail="association closed"))
            self._closed.set()

    async def _on_command(self, event: DimseCommandReceived) -> None:
        command = event.command
        if isinstance(command, CStoreRSP | CEchoRSP):
            pending = self._pending.pop(command.message_id_being_responded_to, None)
            if pending is not None:
                pending.response = command
                pending.done.set()
                self._signal_change()
                return
            detail = f"response to unknown Message ID {command.message_id_being_responded_to}"
        else:
            # A request from the acceptor: no role was negotiated that allows it.
            detail = f"unexpected {type(command).__name__} from the acceptor"
        logger.warning("%s; aborting", detail)
        self._fail(AssociationAbortedError(0, 0, local=True, detail=detail))
        await self._connection.abort()

    # --- Ending ----------------------------------------------------------------------------

    async def release(self) -> None:
        """A-RELEASE (PS3.8 7.2), after waiting for every outstanding response; an
        A-ABORT instead when the peer does not answer within ``acse_timeout``."""
        if self._broken or not self._connection.association.established:
            return
        while self._pending and self._failure is None:
            oldest = min(self._pending.values(), key=lambda pending: pending.sent_at)
            await self._wait_until(self._changed, since=oldest.sent_at)
        if self._failure is not None:
            return
        await self._connection.send(RequestRelease())
        with anyio.move_on_after(self._acse_timeout if self._acse_timeout else float("inf")):
            await self._closed.wait()
        if not self._closed.is_set():
            logger.warning("no A-RELEASE-RP within %s s; aborting", self._acse_timeout)
            await self.abort()

    async def abort(self) -> None:
        """A-ABORT (service-user) and close the connection."""
        self._fail(AssociationAbortedError(0, 0, local=True, detail="aborted by the user"))
        if self._broken:
            await self._connection.aclose()
        else:
            await self._connection.abort()


@dataclass(frozen=True, slots=True)
class _Message:
    context_id: int
    sop_class_uid: str
    sop_instance_uid: str
    dicom_file: DicomFile | None
    encoded: bytes | None
    size: int


# --- Opening an association ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def associate(
    host: str,
    port: int,
    *,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "AIODICOM",
    contexts: Sequence[tuple[str, Sequence[str]]] | None = None,
    max_pdu: int = DEFAULT_MAX_PDU_LENGTH,
    window: int = DEFAULT_WINDOW,
    connect_timeout: float | None = 30.0,
    acse_timeout: float | None = 30.0,
    dimse_timeout: float | None = 60.0,
    ssl_context: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> AsyncIterator[ClientAssociation]:
    """Open an association as requestor; release it when the block ends (abort on error).

    ``contexts`` are (abstract syntax, transfer syntaxes) pairs, e.g. from
    :func:`~aiodicom.scu_files.contexts_for_files`; None proposes Verification only.
    ``window`` is the asynchronous operations window proposed (PS3.7 D.3.3.3, max
    operations invoked); the peer may lower it. ``max_pdu`` is our Maximum Length.
    ``ssl_context`` wraps the connection in TLS (PS3.15 Annex B) with anyio.
    Raises :class:`AssociationRejectedError`, :class:`AssociationAbortedError`,
    ``OSError`` (cannot connect) or ``TimeoutError``.
    """
    proposed = list(contexts) if contexts is not None else [_VERIFICATION_CONTEXT]
    request = build_associate_rq(
        called_ae_title=called_ae,
        calling_ae_title=calling_ae,
        contexts=proposed,
        max_pdu_length=max_pdu,
        max_operations_invoked=window,
        max_operations_performed=1,
    )
    raw_stream: ByteStream
    try:
        with anyio.fail_after(connect_timeout if connect_timeout else float("inf")):
            if ssl_context is None and is_asyncio():
                # The same lean socket edge as the SCP's (see asyncio_transport).
                raw_stream = await asyncio_connect_tcp(host, port)
            elif ssl_context is None:
                raw_stream = await anyio.connect_tcp(host, port)
            else:
                raw_stream = await anyio.connect_tcp(
                    host,
                    port,
                    ssl_context=ssl_context,
                    # DICOM peers commonly close without the TLS close_notify exchange.
                    tls_standard_compatible=False,
                    tls_hostname=tls_hostname,
                )
    except OSError as error:
        raise anyio.ConnectionFailed(f"cannot connect to {host} port {port}: {error}") from error
    except TimeoutError:
        raise TimeoutError(f"no connection to {host} port {port} in {connect_timeout} s") from None
    stream = _ClientStream(raw_stream)
    association = Association(
        Role.REQUESTOR, artim_timeout=acse_timeout if acse_timeout else float("inf")
    )
    connection = Connection(stream, association)
    try:
        negotiated = await _negotiate(connection, request, acse_timeout)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await connection.aclose()
        raise
    client = ClientAssociation(
        connection,
        stream,
        negotiated,
        dimse_timeout=dimse_timeout,
        acse_timeout=acse_timeout,
        chunk_size=chunk_size,
    )
    body_error: BaseException | None = None
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(client._read_events)
        try:
            yield client
        except BaseException as error:
            body_error = error
        with anyio.CancelScope(shield=True):
            try:
                if body_error is None:
                    await client.release()
                else:
                    await client.abort()
            finally:
                await connection.aclose()
                task_group.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


async def _negotiate(
    connection: Connection, request: Any, acse_timeout: float | None
) -> NegotiatedAssociation:
    association = connection.association
    association.send(RequestAssociation(request), anyio.current_time())
    connection.start()
    await connection.flush()
    while True:
        event = await connection.next_event(acse_timeout)
        if isinstance(event, AssociationAccepted):
            try:
                negotiated = interpret_associate_ac(request, event.accept)
            except RemoteProtocolError as error:
                await connection.abort()
                raise AssociationAbortedError(
                    error.abort_source, error.abort_reason, local=True, detail=str(error)
                ) from error
            accepted = len(negotiated.contexts)
            logger.info(
                "association accepted by %s: %d of %d contexts, window %d, max PDU %d",
                request.called_ae_title,
                accepted,
                len(request.presentation_contexts),
                negotiated.max_operations_invoked,
                negotiated.peer_max_pdu_length,
            )
            for context_id, result in negotiated.rejected_contexts.items():
                logger.debug("context %d rejected: %s", context_id, ContextResult(result).name)
            return negotiated
        if isinstance(event, AssociationRejected):
            reject = event.reject
            raise AssociationRejectedError(reject.result, reject.source, reject.reason)
        if isinstance(event, Aborted):
            raise AssociationAbortedError(
                event.source, event.reason, local=event.local, detail=event.detail
            )
        if isinstance(event, ConnectionClosed):
            raise AssociationAbortedError(
                2, 0, local=True, detail="the peer closed the connection during negotiation"
            )


# --- Many files, several associations -------------------------------------------------------------


async def store_files(
    host: str,
    port: int,
    files: Sequence[DicomFile | str | os.PathLike[str]],
    *,
    associations: int = 1,
    on_result: Callable[[StoreResult], None] | None = None,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "AIODICOM",
    max_pdu: int = DEFAULT_MAX_PDU_LENGTH,
    window: int = DEFAULT_WINDOW,
    connect_timeout: float | None = 30.0,
    acse_timeout: float | None = 30.0,
    dimse_timeout: float | None = 60.0,
    ssl_context: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
) -> list[StoreResult]:
    """Send every file, over up to ``associations`` associations at once.

    Contexts are proposed from the files themselves (:func:`contexts_for_files`); files
    needing more than 128 contexts go over several associations one after the other
    (:func:`batch_files`). Returns one result per file, in order, and never raises for
    one file or one association: a file that is not DICOM, that no context fits, or whose
    association failed (rejected, aborted, unreachable) gets a result with ``error``.
    """
    results: list[StoreResult | None] = [None] * len(files)

    def finish(index: int, result: StoreResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    def read_all() -> list[tuple[int, DicomFile]]:
        readable: list[tuple[int, DicomFile]] = []
        for index, item in enumerate(files):
            try:
                dicom_file = item if isinstance(item, DicomFile) else read_dicom_file(item)
            except (NotDicomFileError, OSError) as error:
                finish(index, unsent_result(item, error))
            else:
                readable.append((index, dicom_file))
        return readable

    readable = await anyio.to_thread.run_sync(read_all)
    jobs = plan_jobs(readable, max(1, associations))
    options: dict[str, Any] = {
        "called_ae": called_ae,
        "calling_ae": calling_ae,
        "max_pdu": max_pdu,
        "window": window,
        "connect_timeout": connect_timeout,
        "acse_timeout": acse_timeout,
        "dimse_timeout": dimse_timeout,
        "ssl_context": ssl_context,
        "tls_hostname": tls_hostname,
    }

    async def send_job(job: list[tuple[int, DicomFile]]) -> None:
        job_files = [dicom_file for _, dicom_file in job]
        try:
            async with associate(
                host, port, contexts=contexts_for_files(job_files), **options
            ) as association:
                await association._store_all(
                    job_files,
                    priority=Priority.MEDIUM,
                    report=lambda position, result: finish(job[position][0], result),
                    strict=False,
                )
        except (ClientError, OSError, TimeoutError) as error:
            logger.warning("association to %s:%d failed: %s", host, port, error)
            for index, dicom_file in job:
                if results[index] is None:
                    finish(index, unsent_result(dicom_file, error))

    async def worker(queue: list[list[tuple[int, DicomFile]]]) -> None:
        while queue:
            await send_job(queue.pop(0))

    async with anyio.create_task_group() as task_group:
        for _ in range(min(max(1, associations), len(jobs))):
            task_group.start_soon(worker, jobs)
    return [result for result in results if result is not None]

"""One association opened by the Storage SCU: :class:`ClientAssociation`.

Opened by :func:`aiodicom.client.associate`, which negotiates it and hands it over; see
that module for how the pieces fit (the reader task, the write lock, pipelining up to
the negotiated window, timeouts). Here: the connected stream with its write lock
(:class:`ClientStream`), C-ECHO and C-STORE requests, and the matching of responses to
requests by Message ID Being Responded To (PS3.7 9.3.1.2).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
from anyio.abc import ByteStream
from pydicom.dataset import Dataset

from .protocol.dimse import (
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    CStoreRSP,
    DimseCommand,
    Priority,
)
from .protocol.events import (
    Aborted,
    AcceptRelease,
    ConnectionClosed,
    DimseCommandReceived,
    ReleaseRequested,
    RequestRelease,
    SendMessage,
)
from .protocol.negotiation import (
    NegotiatedAssociation,
    NegotiatedContext,
)
from .protocol.uids import (
    VERIFICATION_SOP_CLASS,
)
from .scu_files import (
    DEFAULT_CHUNK_SIZE,
    UNCOMPRESSED_SYNTAXES,
    AssociationAbortedError,
    ClientError,
    DicomFile,
    FileMessageReader,
    NoPresentationContextError,
    StoreItem,
    StoreResult,
    encode_dataset,
    read_dicom_file,
    unsent_result,
    wire_length,
)
from .transport import Connection, DimseTimeout

logger = logging.getLogger("aiodicom.client")

__all__ = ["ClientAssociation", "ClientStream"]

# Data sets larger than this are read in a worker thread; smaller ones inline, where a
# thread hop would cost more than the read (page-cache reads of a few KiB take µs).
_INLINE_READ_LIMIT = 256 * 1024
# PS3.7 D.3.3.3: 0 is "unlimited"; we still bound what we keep in flight.
_UNLIMITED_WINDOW_CAP = 256
# PS3.7 9.1.1.1 / E.1: Message ID is a US; 0 is avoided (some peers treat it as unset).
_MAX_MESSAGE_ID = 0xFFFF


# --- The stream wrapper: write lock and receive activity ------------------------------------------


class ClientStream(ByteStream):
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
        stream: ClientStream,
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

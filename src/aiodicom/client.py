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
from typing import Any

import anyio
from anyio.abc import ByteStream

from .asyncio_transport import connect_tcp as asyncio_connect_tcp
from .asyncio_transport import is_asyncio
from .client_association import ClientAssociation, ClientStream
from .protocol.association import Association
from .protocol.codes import ContextResult
from .protocol.dimse import (
    Priority,
)
from .protocol.errors import RemoteProtocolError
from .protocol.events import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    ConnectionClosed,
    RequestAssociation,
)
from .protocol.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    NegotiatedAssociation,
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
    AssociationAbortedError,
    AssociationRejectedError,
    ClientError,
    DicomFile,
    NoPresentationContextError,
    NotDicomFileError,
    ProposedContext,
    StoreResult,
    contexts_for_files,
    plan_jobs,
    read_dicom_file,
    unsent_result,
)
from .transport import Connection

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
_VERIFICATION_CONTEXT = ProposedContext(
    VERIFICATION_SOP_CLASS, (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
)


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
    stream = ClientStream(raw_stream)
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

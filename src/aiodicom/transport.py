"""Drive a sans-IO :class:`~aiodicom.protocol.association.Association` over an anyio stream.

This is the only place where the protocol core meets the network: it reads bytes,
feeds them in, writes what the association wants written, arms ARTIM from
``get_timer()`` and applies the I/O layer's own DIMSE/idle timeouts. Both the SCP and
the SCU use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute

from .asyncio_transport import ProtocolStream
from .protocol.association import Association
from .protocol.errors import LocalProtocolError
from .protocol.events import AbortAssociation, ConnectionClosed, Event, SendEvent

logger = logging.getLogger("aiodicom.transport")

# anyio's stream receive() default is 64 KiB; larger reads mean fewer loop iterations
# for big data sets, and a single read still returns whatever has arrived.
DEFAULT_RECEIVE_SIZE = 256 * 1024

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None) if sys.platform == "linux" else None


class DimseTimeout(TimeoutError):
    """The peer sent nothing within the DIMSE or idle timeout."""


class Connection:
    """An association joined to a byte stream.

    ``quickack``: on Linux, ask the kernel to acknowledge at once after every read.
    Linux clears TCP_QUICKACK by itself, so it is set again after each read; without it
    a sender with Nagle's algorithm on (DCMTK's default) waits for our delayed ACK for
    every small data set (tens of milliseconds each).
    """

    def __init__(
        self,
        stream: ByteStream,
        association: Association,
        *,
        receive_size: int = DEFAULT_RECEIVE_SIZE,
        quickack: bool = True,
    ) -> None:
        self.stream = stream
        self.association = association
        self.receive_size = receive_size
        # The raw socket as the event loop exposes it: a socket.socket on trio, a
        # TransportSocket on asyncio, a PseudoSocket on uvloop; all have setsockopt().
        self._socket: Any = None
        if quickack and _TCP_QUICKACK is not None:
            raw = stream.extra(SocketAttribute.raw_socket, None)
            family = getattr(raw, "family", None)
            if hasattr(raw, "setsockopt") and family in (socket.AF_INET, socket.AF_INET6):
                self._socket = raw
        self._transport_closed = False
        self._protocol_stream = stream if isinstance(stream, ProtocolStream) else None
        # anyio's clock; on asyncio that is the loop's own, read without the lookup.
        self._clock: Callable[[], float] = (
            asyncio.get_running_loop().time
            if self._protocol_stream is not None
            else anyio.current_time
        )

    @property
    def quickack_active(self) -> bool:
        """True when TCP_QUICKACK is set after every read (Linux TCP connections)."""
        return self._socket is not None

    def start(self) -> None:
        """Tell the association that the transport connection is open."""
        self.association.connection_made(self._clock())

    async def flush(self) -> None:
        """Write whatever the association has queued for the peer."""
        await self._write(self.association.data_to_send())

    async def _write(self, data: bytes) -> None:
        if data and not self._transport_closed:
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._transport_closed = True
                self.association.connection_lost()

    async def send(self, event: SendEvent) -> None:
        """Issue a local primitive and write its bytes."""
        if self.association.gone:
            # The peer aborted or closed while we were working on our answer: there is
            # no one left to send it to (Table 9-10 has no cell for it).
            logger.debug("%s dropped: the association is gone", type(event).__name__)
            return
        await self._write(self.association.send(event, self._clock()))

    async def next_event(self, timeout: float | None) -> Event:
        """The next event, reading from the peer as needed.

        ``timeout`` bounds the wait for the peer's next bytes (the DIMSE or idle
        timeout); ARTIM is applied on top of it whenever the association runs it.
        Raises :class:`DimseTimeout` when ``timeout`` passes with nothing received.
        """
        association = self.association
        while True:
            event = association.next_event()
            # Answers produced while reading (an A-ABORT, the provider's own A-ASSOCIATE-RJ,
            # which comes with no event) go out before anything else happens.
            if association.has_data_to_send:
                await self.flush()
            if event is not None:
                return event
            if association.closed:
                return ConnectionClosed()
            await self._receive_once(timeout)

    async def _receive_once(self, timeout: float | None) -> None:
        association = self.association
        now = self._clock()
        artim_deadline = association.get_timer()
        deadline = float("inf") if timeout is None else now + timeout
        if artim_deadline is not None:
            deadline = min(deadline, artim_deadline)
        data: bytes | None = None
        try:
            if self._protocol_stream is not None:
                # No cancel scope: the stream times its own wait (same clock).
                data = await self._protocol_stream.receive_before(
                    self.receive_size, None if deadline == float("inf") else deadline
                )
            else:
                with anyio.move_on_after(deadline - now):
                    data = await self.stream.receive(self.receive_size)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._transport_closed = True
            association.connection_lost()
            return
        except OSError as error:
            logger.debug("transport error: %s", error)
            self._transport_closed = True
            association.connection_lost()
            return
        now = self._clock()
        if data is None:
            if artim_deadline is not None and now >= artim_deadline:
                association.handle_timer(now)
                return
            raise DimseTimeout(f"nothing received from the peer in {timeout} s")
        if self._socket is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK or 0, 1)
            except OSError:
                self._socket = None
        association.receive_data(data, now)

    async def abort(self) -> None:
        """Send an A-ABORT (service-user) if the association still allows one, then close."""
        try:
            await self.send(AbortAssociation())
        except LocalProtocolError:
            # PS3.8 Table 9-10 has no A-ABORT in Sta2 or Sta13: closing is the answer.
            logger.debug("no A-ABORT sent in state %s", self.association.state)
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport (idempotent)."""
        self._transport_closed = True
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await self.stream.aclose()

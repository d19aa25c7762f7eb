"""A leaner socket edge for the asyncio backend (and uvloop): an asyncio Protocol.

anyio's asyncio socket stream pauses and resumes reading around every ``receive()``
(two ``epoll_ctl`` calls), waits on an ``asyncio.Event`` and adds checkpoints to every
send and receive. For a receiver that answers thousands of small data sets per second
over one association that is most of the time spent per data set. This module serves
the same connections through a plain :class:`asyncio.Protocol`:

* bytes received are queued by ``data_received`` and handed out without a loop
  iteration when they are already there; reading is paused only when the queue holds
  more than ``read_high_water`` bytes (backpressure from a slow consumer);
* ``receive_before(max_bytes, deadline)`` waits on a future with a loop timer instead
  of a cancel scope (anyio cancellation still applies: the wait is a plain ``await``);
* sends write to the transport and wait only while the kernel's buffer is full, so a
  completed ``send()`` means the bytes are with the kernel, as with anyio's streams.

:class:`ProtocolStream` is an :class:`anyio.abc.ByteStream`, so everything above it
(:class:`aiodicom.transport.Connection`) is unchanged. :class:`ProtocolListener` serves
the sockets of an anyio TCP listener through ``loop.create_server``. Only plain TCP
on asyncio uses this; trio and TLS keep anyio's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup
from anyio.streams.stapled import MultiListener

__all__ = ["ProtocolListener", "ProtocolStream", "connect_tcp", "is_asyncio"]

# Pause reading once this many received bytes wait in the queue (a slow consumer).
DEFAULT_READ_HIGH_WATER = 4 * 1024 * 1024


def is_asyncio() -> bool:
    """True when called from a task of a running asyncio loop (uvloop included)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return asyncio.current_task() is not None


class ProtocolStream(asyncio.Protocol, ByteStream):
    """One TCP connection: an asyncio Protocol that is also an anyio ByteStream."""

    def __init__(
        self,
        *,
        on_connected: Callable[[ProtocolStream], None] | None = None,
        read_high_water: int = DEFAULT_READ_HIGH_WATER,
    ) -> None:
        self._on_connected = on_connected
        self._read_high_water = read_high_water
        self._transport: asyncio.Transport | None = None
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._reading_paused = False
        self._eof = False
        self._lost = False
        self._closed = False
        self._error: BaseException | None = None
        self._receive_waiter: asyncio.Future[None] | None = None
        # The deadline of the current wait, and one loop timer kept across waits (see
        # receive_before): a wait whose deadline is later than the timer's moves it
        # forward when it fires instead of cancelling and scheduling one per wait.
        self._deadline: float | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._extra: dict[Any, Callable[[], Any]] = {}
        self._own_socket: socket.socket | None = None

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        # 0: pause_writing() as soon as anything stays unsent, so that a returned
        # send() means the kernel has the bytes (closing then loses nothing).
        transport.set_write_buffer_limits(0)
        self._own_socket = _own_socket_handle(transport.get_extra_info("socket"))
        self._extra = _socket_attributes(transport, self._own_socket)
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        self._queue.append(bytes(data) if not isinstance(data, bytes) else data)
        self._queued += len(data)
        if self._queued > self._read_high_water and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake_receiver()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_receiver()
        # Keep the transport open for writing: a peer that half-closes after its last
        # PDU (an A-RELEASE-RQ) must still get our answer; aclose() ends it.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_own_socket()
        self._cancel_deadline_timer()
        self._lost = True
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake_receiver()
        self._wake_sender()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_sender()

    def _cancel_deadline_timer(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _close_own_socket(self) -> None:
        if self._own_socket is not None:
            self._own_socket.close()
            self._own_socket = None

    def _wake_receiver(self) -> None:
        _wake(self._receive_waiter)

    def _wake_sender(self) -> None:
        _wake(self._drain_waiter)

    @property
    def reading_paused(self) -> bool:
        """True while reading is paused because too many received bytes are queued."""
        return self._reading_paused

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is above its limit."""
        return self._write_paused

    # --- anyio.abc.ByteStream ---------------------------------------------------------

    def receive_nowait(self, max_bytes: int = 65536) -> bytes | None:
        """Bytes already received (at most ``max_bytes``), or None when none are queued.

        Raises ``anyio.EndOfStream`` / ``BrokenResourceError`` / ``ClosedResourceError``
        once the queue is empty and the connection has ended.
        """
        queue = self._queue
        if queue:
            chunk = queue.popleft()
            if len(chunk) > max_bytes:
                queue.appendleft(chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            self._queued -= len(chunk)
            if self._reading_paused and self._queued <= self._read_high_water // 2:
                self._reading_paused = False
                if self._transport is not None and not self._lost:
                    self._transport.resume_reading()
            return chunk
        if self._closed:
            raise anyio.ClosedResourceError
        if self._eof:
            if self._error is not None:
                raise anyio.BrokenResourceError from self._error
            raise anyio.EndOfStream
        return None

    async def receive_before(self, max_bytes: int, deadline: float | None) -> bytes | None:
        """The next bytes, or None if ``deadline`` (the loop's clock) passes first."""
        chunk = self.receive_nowait(max_bytes)
        if chunk is not None:
            return chunk
        loop = asyncio.get_running_loop()
        waiter = self._receive_waiter = loop.create_future()
        self._deadline = deadline
        if deadline is not None:
            # Deadlines mostly move forward (now + timeout, one wait after another): a
            # timer already set for an earlier moment stays, and moves on when it fires.
            timer = self._deadline_timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._deadline_timer = loop.call_at(deadline, self._deadline_reached, deadline)
        try:
            await waiter
        finally:
            self._receive_waiter = None
            self._deadline = None
        return self.receive_nowait(max_bytes)

    def _deadline_reached(self, scheduled_for: float) -> None:
        """The loop timer set for ``scheduled_for`` fired: end the current wait if that
        was its deadline (or later), else set the timer again for the wait's deadline."""
        self._deadline_timer = None
        deadline = self._deadline
        waiter = self._receive_waiter
        if deadline is None or waiter is None or waiter.done():
            return  # no wait in progress: the next one sets its own timer
        if deadline <= scheduled_for:
            waiter.set_result(None)
        else:
            loop = asyncio.get_running_loop()
            self._deadline_timer = loop.call_at(deadline, self._deadline_reached, deadline)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            chunk = await self.receive_before(max_bytes, None)
            if chunk is not None:
                return chunk

    async def send(self, item: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._lost or self._transport is None:
            raise anyio.BrokenResourceError from self._error
        self._transport.write(item)
        while self._write_paused:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
            if self._closed:
                raise anyio.ClosedResourceError
            if self._lost:
                raise anyio.BrokenResourceError from self._error

    async def send_eof(self) -> None:
        if self._transport is not None and not self._lost:
            with contextlib.suppress(OSError):
                self._transport.write_eof()

    async def aclose(self) -> None:
        # As anyio's socket streams: what send() returned for is with the kernel,
        # which still delivers it after the descriptor is closed.
        self.abort()
        self._wake_receiver()
        self._wake_sender()
        # The transport closes its socket in a loop callback: let it run, so that the
        # connection is closed when this returns (a caller may block the loop next).
        await asyncio.sleep(0)

    def abort(self) -> None:
        """Close the connection at once (no task needed)."""
        self._closed = True
        self._close_own_socket()
        self._cancel_deadline_timer()
        if self._transport is not None:
            self._transport.abort()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._extra


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """End the wait on ``waiter`` if there is one still pending."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _own_socket_handle(raw: Any) -> socket.socket | None:
    """A real socket object for per-read setsockopt() (TCP_QUICKACK after every read).

    uvloop hands out a PseudoSocket whose setsockopt() builds a socket object (and
    calls getsockname()) every time; asyncio a TransportSocket whose setsockopt() is a
    Python method in front of the real one. A duplicate descriptor of the same socket,
    owned and closed by the stream, costs one descriptor per connection instead.
    """
    if raw is None or isinstance(raw, socket.socket):
        return None
    try:
        return socket.socket(fileno=os.dup(raw.fileno()))
    except (OSError, AttributeError, ValueError):
        return None


def _socket_attributes(
    transport: asyncio.Transport, own_socket: socket.socket | None
) -> dict[Any, Callable[[], Any]]:
    raw = own_socket if own_socket is not None else transport.get_extra_info("socket")
    attributes: dict[Any, Callable[[], Any]] = {SocketAttribute.raw_socket: lambda: raw}
    if raw is not None:
        attributes[SocketAttribute.family] = lambda: raw.family
    local = transport.get_extra_info("sockname")
    remote = transport.get_extra_info("peername")
    if isinstance(local, tuple):
        attributes[SocketAttribute.local_address] = lambda: local[:2]
        attributes[SocketAttribute.local_port] = lambda: local[1]
    elif local is not None:
        attributes[SocketAttribute.local_address] = lambda: local
    if isinstance(remote, tuple):
        attributes[SocketAttribute.remote_address] = lambda: remote[:2]
        attributes[SocketAttribute.remote_port] = lambda: remote[1]
    elif remote is not None:
        attributes[SocketAttribute.remote_address] = lambda: remote
    return attributes


async def connect_tcp(host: str, port: int) -> ProtocolStream:
    """Open a TCP connection served by a :class:`ProtocolStream` (asyncio only), with
    TCP_NODELAY set as anyio's ``connect_tcp`` does. Raises ``OSError``."""
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(ProtocolStream, host, port)
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return stream


class ProtocolListener(Listener[ByteStream]):
    """Serves the listening sockets of an anyio TCP listener with ``loop.create_server``.

    The anyio listener keeps owning its sockets (closed by :meth:`aclose`); the asyncio
    servers get duplicates, so each side closes exactly the descriptors it holds.
    """

    def __init__(self, listener: Listener[Any]) -> None:
        self._listener = listener
        inner = listener.listeners if isinstance(listener, MultiListener) else [listener]
        self._sockets: list[socket.socket] = [
            item.extra(SocketAttribute.raw_socket) for item in inner
        ]

    async def serve(
        self, handler: Callable[[ByteStream], Any], task_group: TaskGroup | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as own_group:
            group = task_group if task_group is not None else own_group

            def connected(stream: ProtocolStream) -> None:
                try:
                    group.start_soon(handler, stream)
                except RuntimeError:
                    # The task group has finished (shutting down): nobody will serve
                    # this connection, so it is closed at once.
                    stream.abort()

            servers = []
            try:
                for listening in self._sockets:
                    servers.append(
                        await loop.create_server(
                            lambda: ProtocolStream(on_connected=connected), sock=listening.dup()
                        )
                    )
                await anyio.sleep_forever()
            finally:
                for server in servers:
                    server.close()

    async def aclose(self) -> None:
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._listener.extra_attributes

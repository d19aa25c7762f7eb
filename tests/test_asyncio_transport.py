"""The asyncio Protocol edge: flow control, deadlines, end of stream, and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.stapled import MultiListener

from aiodicom import SCPConfig, StoreSCP
from aiodicom.asyncio_transport import ProtocolListener, ProtocolStream, connect_tcp, is_asyncio
from aiodicom.client import associate
from aiodicom.protocol.association import Association
from aiodicom.protocol.state import Role
from aiodicom.scu_files import NotDicomFileError, contexts_for_files, read_dicom_file
from aiodicom.transport import Connection
from support import pydicom_test_files

pytestmark = pytest.mark.anyio

ASYNCIO_BACKENDS = pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", ("asyncio", {"use_uvloop": True})],
    ids=["asyncio", "uvloop"],
)


class FakeTransport:
    """Records what the protocol asks of its transport."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.written: list[bytes] = []

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.calls.append(f"limits {high}")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4242), "sockname": ("127.0.0.1", 104)}.get(name)

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def write_eof(self) -> None:
        self.calls.append("eof")

    def abort(self) -> None:
        self.calls.append("abort")


def connected(read_high_water: int = 1000) -> tuple[ProtocolStream, FakeTransport]:
    stream = ProtocolStream(read_high_water=read_high_water)
    transport = FakeTransport()
    stream.connection_made(transport)  # type: ignore[arg-type]
    return stream, transport


@ASYNCIO_BACKENDS
async def test_received_bytes_are_handed_out_in_order_and_split_to_max_bytes() -> None:
    stream, transport = connected()
    assert transport.calls == ["limits 0"]
    stream.data_received(b"abcdef")
    stream.data_received(b"gh")
    assert await stream.receive(4) == b"abcd"
    assert await stream.receive(4) == b"ef"
    assert await stream.receive() == b"gh"
    assert stream.receive_nowait() is None
    assert stream.extra(SocketAttribute.remote_address) == ("127.0.0.1", 4242)
    assert stream.extra(SocketAttribute.local_port) == 104


@ASYNCIO_BACKENDS
async def test_reading_pauses_above_the_high_water_mark_and_resumes_below_half() -> None:
    stream, transport = connected(read_high_water=1000)
    stream.data_received(b"x" * 600)
    assert "pause" not in transport.calls
    stream.data_received(b"y" * 600)  # 1200 queued > 1000
    assert transport.calls[-1] == "pause"
    assert stream.reading_paused
    assert await stream.receive() == b"x" * 600  # 600 left: above 500, still paused
    assert transport.calls[-1] == "pause"
    await stream.receive(200)  # 400 left
    assert transport.calls[-1] == "resume"
    assert not stream.reading_paused


@ASYNCIO_BACKENDS
async def test_a_waiting_receive_is_woken_by_data() -> None:
    stream, _ = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(stream.data_received, b"late")
    assert await stream.receive() == b"late"


@ASYNCIO_BACKENDS
async def test_receive_before_returns_none_at_the_deadline_and_loses_nothing() -> None:
    stream, _ = connected()
    loop = asyncio.get_running_loop()
    assert await stream.receive_before(100, loop.time() + 0.01) is None
    stream.data_received(b"after")
    assert await stream.receive_before(100, loop.time() + 10) == b"after"


@ASYNCIO_BACKENDS
async def test_one_loop_timer_serves_waits_whose_deadlines_move_forward() -> None:
    stream, _ = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(stream.data_received, b"one")
    assert await stream.receive_before(100, loop.time() + 10) == b"one"
    timer = stream._deadline_timer
    assert timer is not None and not timer.cancelled()
    loop.call_soon(stream.data_received, b"two")
    assert await stream.receive_before(100, loop.time() + 20) == b"two"
    assert stream._deadline_timer is timer  # kept, not cancelled and set again
    stream.abort()
    assert timer.cancelled() and stream._deadline_timer is None


@ASYNCIO_BACKENDS
async def test_a_wait_ends_at_its_own_deadline_when_the_timer_was_set_earlier() -> None:
    stream, _ = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(stream.data_received, b"first")
    assert await stream.receive_before(100, loop.time() + 0.02) == b"first"
    # The timer still points at the first deadline; this wait's deadline is later.
    deadline = loop.time() + 0.1
    assert await stream.receive_before(100, deadline) is None
    assert loop.time() >= deadline - 0.002  # not woken early by the old timer (ms clocks)
    stream.data_received(b"kept")
    assert await stream.receive_before(100, loop.time() + 10) == b"kept"


@ASYNCIO_BACKENDS
async def test_an_earlier_deadline_replaces_a_later_timer() -> None:
    stream, _ = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(stream.data_received, b"x")
    assert await stream.receive_before(100, loop.time() + 3600) == b"x"
    late_timer = stream._deadline_timer
    with anyio.fail_after(10):
        assert await stream.receive_before(100, loop.time() + 0.01) is None
    assert late_timer is not None and late_timer.cancelled()


@ASYNCIO_BACKENDS
async def test_end_of_stream_after_the_queue_is_drained() -> None:
    stream, _ = connected()
    stream.data_received(b"last")
    stream.eof_received()
    stream.connection_lost(None)
    assert await stream.receive() == b"last"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()


@ASYNCIO_BACKENDS
async def test_a_reset_is_a_broken_resource_for_receive_and_send() -> None:
    stream, _ = connected()
    asyncio.get_running_loop().call_soon(stream.connection_lost, ConnectionResetError())
    with pytest.raises(anyio.BrokenResourceError):
        await stream.receive()
    with pytest.raises(anyio.BrokenResourceError):
        await stream.send(b"too late")


@ASYNCIO_BACKENDS
async def test_send_waits_while_the_transport_is_paused() -> None:
    stream, transport = connected()
    stream.pause_writing()
    loop = asyncio.get_running_loop()
    loop.call_soon(stream.resume_writing)
    await stream.send(b"one")  # returns only after resume_writing()
    assert transport.written == [b"one"]
    assert not stream.writing_paused


@ASYNCIO_BACKENDS
async def test_a_connection_lost_while_a_send_waits_is_a_broken_resource() -> None:
    stream, _ = connected()
    stream.pause_writing()
    asyncio.get_running_loop().call_soon(stream.connection_lost, BrokenPipeError())
    with pytest.raises(anyio.BrokenResourceError):
        await stream.send(b"data")


@ASYNCIO_BACKENDS
async def test_aclose_aborts_and_later_calls_say_closed() -> None:
    stream, transport = connected()
    await stream.aclose()
    assert transport.calls[-1] == "abort"
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")


@ASYNCIO_BACKENDS
async def test_cancelling_a_waiting_receive_leaves_the_stream_usable() -> None:
    stream, _ = connected()
    with anyio.move_on_after(0.01):
        await stream.receive()
    stream.data_received(b"still here")
    assert await stream.receive() == b"still here"


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _serve_three_echo_connections() -> list[tuple[str, bool]]:
    """A ProtocolListener serving three connections in turn, then closed."""
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = ProtocolListener(inner)
    port = listener.extra(SocketAttribute.local_port)
    seen: list[tuple[str, bool]] = []

    async def echo_upper(stream: ByteStream) -> None:
        assert isinstance(stream, ProtocolStream)
        connection = Connection(stream, Association(Role.ACCEPTOR))
        seen.append((stream.extra(SocketAttribute.remote_address)[0], connection.quickack_active))
        # A socket whose setsockopt() is a plain call (uvloop's PseudoSocket builds a
        # socket object per call, asyncio's TransportSocket adds a Python method in
        # front: the stream owns a duplicate descriptor instead).
        assert type(stream.extra(SocketAttribute.raw_socket)) is socket.socket
        async with stream:
            while True:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    return
                await stream.send(data.upper())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, echo_upper)
            for _ in range(3):
                async with await anyio.connect_tcp("127.0.0.1", port) as client:
                    await client.send(b"dicom")
                    assert await client.receive() == b"DICOM"
            task_group.cancel_scope.cancel()
        await listener.aclose()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
    return seen


@ASYNCIO_BACKENDS
@pytest.mark.skipif(sys.platform != "linux", reason="counts /proc/self/fd; QUICKACK")
async def test_listener_serves_real_connections_and_closes_every_descriptor() -> None:
    # The first round lets the loop make its one-off descriptors (libuv keeps a spare
    # /dev/null descriptor once a server listens).
    assert await _serve_three_echo_connections() == [("127.0.0.1", True)] * 3
    before = _open_descriptors()
    await _serve_three_echo_connections()
    await _serve_three_echo_connections()
    # The listening socket, its duplicate given to the asyncio server, and every
    # accepted connection are closed.
    assert _open_descriptors() == before


@ASYNCIO_BACKENDS
async def test_is_asyncio_on_asyncio() -> None:
    assert is_asyncio()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_is_asyncio_on_trio() -> None:
    assert not is_asyncio()


@ASYNCIO_BACKENDS
@pytest.mark.parametrize("asyncio_protocol", [True, False], ids=["protocol", "anyio-streams"])
async def test_scp_stores_the_same_bytes_through_either_edge(
    tmp_path: Path, asyncio_protocol: bool
) -> None:
    files = []
    for path in pydicom_test_files():
        with contextlib.suppress(NotDicomFileError):
            files.append(read_dicom_file(path))
    # Corpus files sharing a SOP Instance UID would replace each other.
    files = list({item.sop_instance_uid: item for item in files}.values())[:12]
    config = SCPConfig(asyncio_protocol=asyncio_protocol, accept_any_sop_class=True)
    scp = StoreSCP(host="127.0.0.1", port=0, data_dir=tmp_path, sort_by="IMAGE", config=config)
    async with scp:
        with anyio.fail_after(60):
            async with associate(
                "127.0.0.1", scp.port, contexts=contexts_for_files(files)
            ) as association:
                results = [await association.store(item) for item in files]
    assert [result.status for result in results] == [0] * len(files)
    for item in files:
        stored = (tmp_path / f"{item.sop_instance_uid}.dcm").read_bytes()
        with open(item.path, "rb") as source:
            source.seek(item.dataset_offset)
            assert stored.endswith(source.read(item.dataset_length))


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@ASYNCIO_BACKENDS
@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
async def test_listener_serves_every_socket_of_a_multi_listener() -> None:
    # StoreSCP(host=None) listens on one socket per address family (an anyio
    # MultiListener); the Protocol listener must serve all of them. Built here from two
    # loopback listeners, so that nothing listens beyond loopback.
    inner = MultiListener(
        [
            await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0),
            await anyio.create_tcp_listener(local_host="::1", local_port=0),
        ]
    )
    ports = [item.extra(SocketAttribute.local_port) for item in inner.listeners]
    listener = ProtocolListener(inner)
    served: list[str] = []

    async def greet(stream: ByteStream) -> None:
        async with stream:
            served.append(stream.extra(SocketAttribute.remote_address)[0])
            await stream.send(b"hello")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, greet)
            for address, port in zip(("127.0.0.1", "::1"), ports, strict=True):
                async with await anyio.connect_tcp(address, port) as client:
                    assert await client.receive() == b"hello"
            task_group.cancel_scope.cancel()
        await listener.aclose()
    assert served == ["127.0.0.1", "::1"]


@ASYNCIO_BACKENDS
async def test_a_connection_arriving_after_the_task_group_ended_is_closed() -> None:
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = ProtocolListener(inner)
    port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as finished:
        pass  # a task group that is no longer active

    async def never(stream: ByteStream) -> None:
        raise AssertionError("no handler may run")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, never, finished)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await client.receive()  # closed by the listener, not left hanging
            task_group.cancel_scope.cancel()
        await listener.aclose()


@ASYNCIO_BACKENDS
async def test_a_half_closed_peer_still_gets_the_answer() -> None:
    # A peer may shut down its sending side right after its last PDU (an A-RELEASE-RQ)
    # and still wait for the answer.
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = ProtocolListener(inner)
    port = listener.extra(SocketAttribute.local_port)

    async def answer_after_eof(stream: ByteStream) -> None:
        async with stream:
            request = await stream.receive()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.send(b"answer to " + request)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(listener.serve, answer_after_eof)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(b"release")
                await client.send_eof()
                assert await client.receive() == b"answer to release"
            task_group.cancel_scope.cancel()
        await listener.aclose()


@ASYNCIO_BACKENDS
async def test_aclose_has_closed_the_socket_when_it_returns() -> None:
    # The caller may block the loop right after aclose() (a test fixture waiting for a
    # peer process, a synchronous shutdown): the peer must already see the close.
    with socket.create_server(("127.0.0.1", 0)) as server:
        stream = await connect_tcp("127.0.0.1", server.getsockname()[1])
        peer, _ = server.accept()
        with peer:
            peer.settimeout(5)
            await stream.aclose()
            # Blocking on purpose: the event loop does not run until this returns.
            # An abort may reset instead of a clean EOF: closed either way.
            with contextlib.suppress(ConnectionResetError):
                assert peer.recv(10) == b""

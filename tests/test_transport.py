"""The transport glue: what it sets on the socket, on every backend."""

from __future__ import annotations

import sys

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from aiodicom.protocol.association import Association
from aiodicom.protocol.state import Role
from aiodicom.transport import Connection

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "anyio_backend",
    ["asyncio", ("asyncio", {"use_uvloop": True}), "trio"],
    ids=["asyncio", "uvloop", "trio"],
)
@pytest.mark.skipif(sys.platform != "linux", reason="TCP_QUICKACK is Linux-only")
async def test_quickack_is_armed_on_accepted_tcp_streams() -> None:
    # Each event loop wraps the raw socket differently (TransportSocket, PseudoSocket,
    # socket.socket); QUICKACK must be found on all of them, or a sender with Nagle on
    # (DCMTK's default) waits for our delayed ACK on every small data set.
    found: list[bool] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            found.append(Connection(stream, Association(Role.ACCEPTOR)).quickack_active)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, handle)
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                with pytest.raises(anyio.EndOfStream):  # the handler has closed
                    await client.receive()
        task_group.cancel_scope.cancel()
    assert found == [True]

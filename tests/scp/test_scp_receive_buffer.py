"""SO_RCVBUF on the listening sockets, inherited by the connections they accept."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from aiodicom import SCPConfig, StoreSCP
from aiodicom.client import associate
from aiodicom.scp import set_receive_buffer

pytestmark = pytest.mark.anyio


def _receive_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


async def test_accepted_connections_inherit_the_listeners_receive_buffer() -> None:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    [listener] = multi.listeners  # one address: one socket listener
    raw = listener.extra(anyio.abc.SocketAttribute.raw_socket)
    default = _receive_buffer(raw)
    set_receive_buffer(multi, 300_000)
    fixed = _receive_buffer(raw)
    assert fixed != default and fixed >= 300_000  # Linux reports twice the request
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, await anyio.connect_tcp("127.0.0.1", port):
        with anyio.fail_after(10):
            accepted = await listener.accept()
        async with accepted:
            assert _receive_buffer(accepted.extra(anyio.abc.SocketAttribute.raw_socket)) == fixed


@pytest.mark.parametrize("size", [262_144, None])
async def test_the_scp_sets_it_from_its_config_or_leaves_the_kernel_default(
    tmp_path: Path, size: int | None
) -> None:
    reference = socket.socket()
    default = _receive_buffer(reference)
    reference.close()
    scp = StoreSCP(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        config=SCPConfig(receive_buffer_size=size),
    )
    seen: list[int] = []
    original = scp._serve_connection

    async def record(stream: anyio.abc.ByteStream) -> None:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        seen.append(_receive_buffer(raw))
        await original(stream)

    scp._serve_connection = record  # type: ignore[method-assign]
    async with scp:
        with anyio.fail_after(10):
            async with associate("127.0.0.1", scp.port, called_ae="AIODICOM") as assoc:
                await assoc.echo()
    assert len(seen) == 1
    if size is None:
        assert seen[0] == default
    else:
        assert seen[0] >= size and seen[0] != default

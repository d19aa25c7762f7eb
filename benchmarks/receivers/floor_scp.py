"""The least a Python receiver can do per data set: a reference point, not a product.

One ``asyncio.Protocol`` per connection, nothing between the socket and the file:
frame the PDUs, answer the A-ASSOCIATE-RQ (aiodicom's negotiation), collect the command
and data set PDVs, decode the command (aiodicom's codec), write preamble + File Meta
(aiodicom's encoder) + the data set bytes to a temporary file, rename it to
``SOP_INSTANCE_UID.dcm`` and answer C-STORE-RSP success. TCP_QUICKACK after every read,
like aiodicom, so Nagle's algorithm on the sender costs it nothing either.

What it leaves out is everything aiodicom's receiver adds on top of that work: the
PS3.8 state machine and its timers, PDU and PDV checks, the header scan (data set
against command, the sorted layout, path safety), duplicate policies, statistics,
logging and callbacks. It trusts its peer completely: never run it outside a benchmark.

The benchmark runs it when ``python-floor`` is named in ``--receivers``, to show how
far a receiver's per-file CPU can fall in Python on the machine at hand.

Run: ``python floor_scp.py PORT OUTPUT_DIR`` (binds 127.0.0.1; SIGINT stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import struct
from pathlib import Path

from aiodicom.protocol.dimse import (
    CEchoRQ,
    CEchoRSP,
    CStoreRQ,
    CStoreRSP,
    decode_command,
    encode_command,
)
from aiodicom.protocol.dimse_stream import encode_message
from aiodicom.protocol.negotiation import AcceptorPolicy, negotiate_as_acceptor
from aiodicom.protocol.pdu import AssociateRQ
from aiodicom.protocol.pdu_codec import decode_pdu, encode_pdu
from aiodicom.storage.part10 import encode_file_meta

_PDU_HEADER = struct.Struct(">BxI")  # PS3.8 9.3.1: type, reserved, length
_PDV_HEADER = struct.Struct(">IBB")  # PS3.8 9.3.5.1: item length, context ID, control
_ASSOCIATE_RQ, _P_DATA_TF, _RELEASE_RQ, _ABORT = 0x01, 0x04, 0x05, 0x07
_RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"  # PS3.8 9.3.7
_WRITE_AT = 1 << 20  # write collected data set bytes once this many are pending
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_names = itertools.count()


class FloorProtocol(asyncio.Protocol):
    def __init__(self, output_dir: Path, policy: AcceptorPolicy) -> None:
        self.output_dir = output_dir
        self.policy = policy
        self.buffer = bytearray()
        self.transfer_syntaxes: dict[int, str] = {}
        self.max_pdu_length = 16384
        self.command = bytearray()
        self.store: tuple[CStoreRQ, str, int] | None = None  # request, temp path, fd
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        raw = transport.get_extra_info("socket")
        self.quickack = socket.socket(fileno=os.dup(raw.fileno())) if _TCP_QUICKACK else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.quickack is not None:
            self.quickack.close()
        if self.store is not None:
            _, temp, descriptor = self.store
            os.close(descriptor)
            os.unlink(temp)

    def data_received(self, data: bytes) -> None:
        if self.quickack is not None:
            self.quickack.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK or 0, 1)
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 6:
            pdu_type, length = _PDU_HEADER.unpack_from(buffer, offset)
            end = offset + 6 + length
            if end > len(buffer):
                break
            if pdu_type == _P_DATA_TF:
                # pdata() copies what it keeps: the view is gone when it returns, so the
                # buffer can be shortened below.
                self.pdata(memoryview(buffer)[offset + 6 : end])
            elif pdu_type == _ASSOCIATE_RQ:
                self.associate(bytes(buffer[offset:end]))
            elif pdu_type == _RELEASE_RQ:
                self.transport.write(_RELEASE_RP)
            elif pdu_type == _ABORT:
                self.transport.close()
            offset = end
        del buffer[:offset]

    def associate(self, raw: bytes) -> None:
        request = decode_pdu(raw)
        assert isinstance(request, AssociateRQ)
        answer = negotiate_as_acceptor(request, self.policy)
        if isinstance(answer, tuple):
            accept, negotiated = answer
            self.transfer_syntaxes = {
                context_id: context.transfer_syntax
                for context_id, context in negotiated.contexts.items()
            }
            self.max_pdu_length = negotiated.peer_max_pdu_length or 1 << 20
            self.transport.write(encode_pdu(accept))
        else:
            self.transport.write(encode_pdu(answer))

    def pdata(self, body: memoryview) -> None:
        offset = 0
        while offset < len(body):
            item_length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
            value = body[offset + 6 : offset + 4 + item_length]
            offset += 4 + item_length
            if control & 0x01:  # a command fragment
                self.command += value
                if control & 0x02:
                    self.on_command(context_id, decode_command(bytes(self.command)))
                    self.command = bytearray()
            else:
                self.pending.append(bytes(value))
                self.pending_bytes += len(value)
                if control & 0x02:
                    self.finish_store(context_id)
                elif self.pending_bytes >= _WRITE_AT:
                    self.write_pending()

    def on_command(self, context_id: int, command: object) -> None:
        if isinstance(command, CEchoRQ):
            response = CEchoRSP(command.message_id, 0x0000)
            self.respond(context_id, encode_command(response))
        elif isinstance(command, CStoreRQ):
            temp = str(self.output_dir / f".{os.getpid()}-{next(_names)}.part")
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self.store = (command, temp, descriptor)
            self.pending = [
                encode_file_meta(
                    sop_class_uid=command.affected_sop_class_uid,
                    sop_instance_uid=command.affected_sop_instance_uid,
                    transfer_syntax_uid=self.transfer_syntaxes[context_id],
                )
            ]
            self.pending_bytes = len(self.pending[0])

    def write_pending(self) -> None:
        assert self.store is not None
        # Local files take a whole writev (at most 64 PDVs here, far below IOV_MAX); the
        # benchmark's integrity check would catch it if one did not.
        if os.writev(self.store[2], self.pending) != self.pending_bytes:
            raise OSError("short write")
        self.pending, self.pending_bytes = [], 0

    def finish_store(self, context_id: int) -> None:
        assert self.store is not None
        request, temp, descriptor = self.store
        self.write_pending()
        os.close(descriptor)
        self.store = None
        os.replace(temp, self.output_dir / f"{request.affected_sop_instance_uid}.dcm")
        response = CStoreRSP(
            request.message_id,
            0x0000,
            request.affected_sop_class_uid,
            request.affected_sop_instance_uid,
        )
        self.respond(context_id, encode_command(response))

    def respond(self, context_id: int, command: bytes) -> None:
        self.transport.write(encode_message(context_id, command, None, self.max_pdu_length))


async def serve(port: int, output_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    policy = AcceptorPolicy(ae_title="FLOOR", abstract_syntaxes=None)
    server = await loop.create_server(
        lambda: FloorProtocol(output_dir, policy), "127.0.0.1", port, reuse_address=True
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"python floor SCP: listening on port {port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("output_dir", type=Path)
    arguments = parser.parse_args()
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(arguments.port, arguments.output_dir))


if __name__ == "__main__":
    main()

"""DIMSE messages over P-DATA-TF: fragmenting on the way out, reassembly on the way in.

A DIMSE message is a command set, then (when Command Data Set Type says so) a data set.
PS3.8 Annex E.1 cuts each into fragments, one per PDV; each fragment carries a one-byte
message control header (bit 0: 1 = command, 0 = data set; bit 1: 1 = last fragment of
that part). All the PDVs in one P-DATA-TF belong to the same message, a PDU may hold
several of them, fragments are even-sized, and fragments of different messages are
never interleaved.

Outgoing, the few bytes of the P-DATA-TF and PDV headers are written here with
:mod:`struct` (PS3.8 9.3.5: PDU = type 0x04, reserved, 4-byte big-endian length; PDV
item = 4-byte big-endian item length, context id, control header, fragment).
:func:`iter_message_pdus` yields the headers and says how many data-set bytes follow
each one, so that a large data set is sent straight from its buffer or file.

Incoming, :class:`MessageAssembler` turns the :class:`~.pdu.PDVFragment` pieces of the
PDU reader into :class:`~.events.DimseCommandReceived` and
:class:`~.events.DataSetChunkReceived`. The command set is buffered (it is small and
capped); the data set never is: each piece goes out as the view it came in.

Protocol errors raise :class:`~.errors.RemoteProtocolError` with A-ABORT reason
"unexpected PDU parameter" (PS3.8 9.3.8, reason 5) for a fragment that is well formed
but not allowed now (wrong kind, wrong presentation context), and "invalid PDU parameter
value" (reason 6) for a command set that is too long or does not decode.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .codes import AbortReason, PDUType
from .dimse import MAX_COMMAND_SET_LENGTH, decode_command
from .errors import RemoteProtocolError
from .events import DataSetChunkReceived, DimseCommandReceived
from .pdu import PDVFragment

# PS3.8 9.3.5.1: a PDV item costs 4 (item length) + 1 (context id) + 1 (control header)
# bytes besides its fragment; the PDU header is 6 bytes and is not counted in the
# PDU length that the peer's Maximum Length bounds (PS3.8 D.1).
PDV_OVERHEAD = 6
PDU_HEADER_LENGTH = 6

# Maximum Length 0 means the peer set no limit (PS3.8 D.1): we still cut the data set
# into PDUs of this body length, so that each write stays a reasonable size.
UNLIMITED_PDU_LENGTH = 1024 * 1024
# The PDU length field is 32 bits (PS3.8 9.3.5).
_LARGEST_PDU_LENGTH = 0xFFFFFFFF

# PS3.8 E.2 message control header bits.
_COMMAND = 0x01
_LAST = 0x02

_PDU_HEADER = struct.Struct(">BBI")
_PDV_HEADER = struct.Struct(">IBB")
# A P-DATA-TF header immediately followed by the header of its single PDV.
_PDU_AND_PDV_HEADER = struct.Struct(">BBIIBB")


def _max_fragment(max_pdu_length: int) -> tuple[int, int]:
    """(PDU body limit, largest even fragment that fits alone in one PDU)."""
    if max_pdu_length < 0:
        raise ValueError(f"max_pdu_length cannot be negative: {max_pdu_length}")
    limit = min(max_pdu_length or UNLIMITED_PDU_LENGTH, _LARGEST_PDU_LENGTH)
    # PS3.8 E.1: every fragment has an even length; the smallest useful one is 2 bytes.
    fragment = (limit - PDV_OVERHEAD) & ~1
    if fragment < 2:
        raise ValueError(f"max_pdu_length {max_pdu_length} leaves no room for a fragment")
    return limit, fragment


def iter_message_pdus(
    context_id: int,
    command: bytes,
    dataset_length: int | None,
    max_pdu_length: int,
) -> Iterator[tuple[bytes, int]]:
    """The P-DATA-TF PDUs of one message, as ``(header, data_length)`` pairs.

    The sender writes ``header``, then the next ``data_length`` bytes of the data set
    (0 for PDUs that hold only command fragments), in order. ``header`` holds the PDU
    header, any command PDVs and the header of the data-set PDV. ``dataset_length`` is
    None when the message has no data set. Every PDU body is at most ``max_pdu_length``
    bytes (the peer's Maximum Length; 0 = no limit). When room is left after the last
    command fragment, the first data-set fragment shares its PDU.
    """
    if dataset_length is not None and dataset_length < 0:
        raise ValueError(f"dataset_length cannot be negative: {dataset_length}")
    limit, max_fragment = _max_fragment(max_pdu_length)
    command_length = len(command)
    offset = 0
    # Every command fragment but the last goes in a PDU of its own.
    while command_length - offset > max_fragment:
        end = offset + max_fragment
        yield (
            _PDU_AND_PDV_HEADER.pack(
                PDUType.P_DATA_TF,
                0,
                max_fragment + PDV_OVERHEAD,
                max_fragment + 2,
                context_id,
                _COMMAND,
            )
            + command[offset:end],
            0,
        )
        offset = end
    last_command_pdv = (
        _PDV_HEADER.pack(command_length - offset + 2, context_id, _COMMAND | _LAST)
        + command[offset:]
    )
    if dataset_length is None:
        yield _PDU_HEADER.pack(PDUType.P_DATA_TF, 0, len(last_command_pdv)) + last_command_pdv, 0
        return

    room = (limit - len(last_command_pdv) - PDV_OVERHEAD) & ~1
    first = min(room, dataset_length)
    if room >= 0 and (first == dataset_length or first > 0):
        # The first data fragment rides in the same PDU as the end of the command.
        flags = _LAST if first == dataset_length else 0
        yield (
            _PDU_HEADER.pack(PDUType.P_DATA_TF, 0, len(last_command_pdv) + PDV_OVERHEAD + first)
            + last_command_pdv
            + _PDV_HEADER.pack(first + 2, context_id, flags),
            first,
        )
        sent = first
        if flags:
            return
    else:
        yield _PDU_HEADER.pack(PDUType.P_DATA_TF, 0, len(last_command_pdv)) + last_command_pdv, 0
        sent = 0
    yield from _iter_data_pdus(context_id, dataset_length - sent, max_fragment)


def iter_dataset_pdus(
    context_id: int, dataset_length: int, max_pdu_length: int
) -> Iterator[tuple[bytes, int]]:
    """Like :func:`iter_message_pdus` for a data set alone (its command already sent)."""
    if dataset_length < 0:
        raise ValueError(f"dataset_length cannot be negative: {dataset_length}")
    _, max_fragment = _max_fragment(max_pdu_length)
    return _iter_data_pdus(context_id, dataset_length, max_fragment)


def _iter_data_pdus(
    context_id: int, remaining: int, max_fragment: int
) -> Iterator[tuple[bytes, int]]:
    pack = _PDU_AND_PDV_HEADER.pack
    full_header = pack(
        PDUType.P_DATA_TF, 0, max_fragment + PDV_OVERHEAD, max_fragment + 2, context_id, 0
    )
    while remaining > max_fragment:
        yield full_header, max_fragment
        remaining -= max_fragment
    # The last fragment (possibly empty, for an empty data set) carries the last bit.
    yield (
        pack(PDUType.P_DATA_TF, 0, remaining + PDV_OVERHEAD, remaining + 2, context_id, _LAST),
        (remaining),
    )


def encode_message(
    context_id: int,
    command: bytes,
    dataset: bytes | bytearray | memoryview | None,
    max_pdu_length: int,
) -> bytes:
    """All the P-DATA-TF PDUs of one message as one byte string (small messages)."""
    if dataset is None:
        pdus = iter_message_pdus(context_id, command, None, max_pdu_length)
        return b"".join(header for header, _ in pdus)
    view = memoryview(dataset).cast("B")
    parts: list[bytes | memoryview] = []
    offset = 0
    for header, data_length in iter_message_pdus(context_id, command, len(view), max_pdu_length):
        parts.append(header)
        if data_length:
            parts.append(view[offset : offset + data_length])
            offset += data_length
    return b"".join(parts)


class MessageAssembler:
    """Reassembles DIMSE messages from PDV fragments; pure and zero-copy for data sets.

    Feed it every :class:`PDVFragment` of the P-DATA-TF PDUs in order. It does not know
    which presentation contexts were accepted: the association checks that.
    """

    __slots__ = (
        "_command_context",
        "_command_parts",
        "_command_size",
        "_dataset_context",
        "max_command_length",
    )

    def __init__(self, max_command_length: int = MAX_COMMAND_SET_LENGTH) -> None:
        self.max_command_length = max_command_length
        # Context of a command set being received, and its pieces so far.
        self._command_context: int | None = None
        self._command_parts: list[bytes] = []
        self._command_size = 0
        # Context of the data set expected or being received (None: none expected).
        self._dataset_context: int | None = None

    @property
    def expecting_dataset(self) -> bool:
        """A command announced a data set whose last fragment has not arrived yet."""
        return self._dataset_context is not None

    @property
    def in_message(self) -> bool:
        """A message is in progress (a partial command, or a data set still expected)."""
        return self._command_context is not None or self._dataset_context is not None

    @property
    def context_id(self) -> int | None:
        """The presentation context of the message in progress, if any."""
        if self._dataset_context is not None:
            return self._dataset_context
        return self._command_context

    def feed(self, fragment: PDVFragment) -> DimseCommandReceived | DataSetChunkReceived | None:
        """Take one fragment; return what it completes, if anything."""
        dataset_context = self._dataset_context
        if not fragment.is_command:
            if dataset_context is None:
                raise _unexpected("a data set fragment arrived but no data set is expected")
            if fragment.context_id != dataset_context:
                raise _unexpected(
                    f"data set fragment on presentation context {fragment.context_id} "
                    f"inside a message on context {dataset_context}"
                )
            if fragment.last_fragment and fragment.pdv_complete:
                self._dataset_context = None
                return DataSetChunkReceived(dataset_context, fragment.data, True)
            if not fragment.data:
                return None
            return DataSetChunkReceived(dataset_context, fragment.data, False)

        if dataset_context is not None:
            raise _unexpected("a command fragment arrived while a data set is expected")
        context_id = fragment.context_id
        if self._command_context is None:
            self._command_context = context_id
        elif context_id != self._command_context:
            raise _unexpected(
                f"command fragment on presentation context {context_id} inside a "
                f"command on context {self._command_context}"
            )
        self._command_size += len(fragment.data)
        if self._command_size > self.max_command_length:
            raise RemoteProtocolError(
                f"command set longer than {self.max_command_length} bytes",
                abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
            )
        # The view is only valid until the caller's next read: keep a copy of the pieces.
        self._command_parts.append(bytes(fragment.data))
        if not (fragment.last_fragment and fragment.pdv_complete):
            return None

        parts = self._command_parts
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        self._command_parts = []
        self._command_size = 0
        self._command_context = None
        command = decode_command(raw)
        if command.has_dataset:
            self._dataset_context = context_id
        return DimseCommandReceived(context_id, command)


def _unexpected(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, abort_reason=AbortReason.UNEXPECTED_PDU_PARAMETER)


__all__ = [
    "PDU_HEADER_LENGTH",
    "PDV_OVERHEAD",
    "UNLIMITED_PDU_LENGTH",
    "MessageAssembler",
    "encode_message",
    "iter_dataset_pdus",
    "iter_message_pdus",
]

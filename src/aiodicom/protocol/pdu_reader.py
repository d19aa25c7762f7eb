"""The incremental PDU reader: bytes in, PDUs (and streamed P-DATA) out.

Modelled on h2's frame buffer: read the fixed 6-byte header (PS3.8 9.3.1), check the
declared length against a cap *before* buffering anything, then wait for the body. The
difference is P-DATA-TF, which is never buffered whole: its PDV items are parsed as the
bytes arrive and their data is handed out as memoryview slices of the very objects that
were fed (no copy), so a 1 GiB data set never has to sit in memory here.

Invariants:

* The first byte of a PDU is checked as soon as it arrives: an HTTP request or a TLS
  ClientHello on the DICOM port is refused after one byte, having allocated nothing.
* Only two things are ever copied: PDU and PDV headers that straddle two fed chunks
  (6 bytes at most), and the body of a non-P-DATA PDU (at most ``max_pdu_length``).
* Fed objects are referenced, not copied, until their bytes have been handed out; the
  caller must not change a fed buffer afterwards, and should drain ``next_item`` after
  every ``feed`` (the fed chunks are queued until then).
* After a protocol error the reader is dead: every later ``feed``/``next_item`` raises
  the same :class:`~.errors.RemoteProtocolError`.
"""

from __future__ import annotations

from collections import deque

from .codes import AbortReason, PDUType
from .errors import RemoteProtocolError
from .pdu import PDU, PDataStarted, PDVFragment
from .pdu_codec import (
    PDU_HEADER,
    PDU_HEADER_LENGTH,
    PDV_HEADER,
    PDV_HEADER_LENGTH,
    decode_pdu,
)

# DCMTK's cap on the PDUs it buffers whole (an A-ASSOCIATE-RQ is a few KiB in practice).
DEFAULT_MAX_PDU_LENGTH = 1_048_576

_KNOWN_PDU_TYPES = frozenset(PDUType)
# PS3.8 Tables 9-21, 9-24, 9-25, 9-26: these PDUs always have a 4-byte body. The reader
# is strict: any other declared length is refused from the header alone.
_FIXED_LENGTH_TYPES = frozenset(
    {PDUType.ASSOCIATE_RJ, PDUType.RELEASE_RQ, PDUType.RELEASE_RP, PDUType.ABORT}
)
_FIXED_BODY_LENGTH = 4
_P_DATA_TF = int(PDUType.P_DATA_TF)
_COMMAND_BIT = 0x01  # PS3.8 E.2: message control header bit 0, command
_LAST_BIT = 0x02  # bit 1, last fragment; bits 2-7 are reserved and not tested

# Reader states.
_PDU_HEADER = 0  # waiting for the 6-byte header of the next PDU
_BODY = 1  # buffering the body of a non-P-DATA PDU
_PDV_HEADER = 2  # inside a P-DATA-TF, waiting for the 6-byte header of the next PDV
_PDV_DATA = 3  # inside a PDV, handing out its data

_EMPTY = memoryview(b"")


def _invalid(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE)


class PDUReader:
    """Feed it bytes as they arrive; take PDUs, ``PDataStarted`` and ``PDVFragment`` out.

    ``max_pdu_length`` caps every PDU that is buffered whole. ``max_pdata_length`` caps the
    body of a P-DATA-TF: once associated, set it to the Maximum Length we advertised
    (PS3.8 Annex D.1: a peer must not send more); while it is None, P-DATA-TF is capped
    by ``max_pdu_length`` like the rest.
    """

    __slots__ = (
        "_body",
        "_body_remaining",
        "_buffered",
        "_chunks",
        "_context_id",
        "_error",
        "_header",
        "_is_command",
        "_is_last",
        "_max_pdata_length",
        "_offset",
        "_pdu_remaining",
        "_pdv_remaining",
        "_state",
        "max_pdu_length",
    )

    def __init__(self, *, max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH) -> None:
        if max_pdu_length < 1:
            raise ValueError("max_pdu_length must be a positive number of bytes")
        self.max_pdu_length = max_pdu_length
        self._max_pdata_length: int | None = None
        self._chunks: deque[memoryview] = deque()
        self._offset = 0  # how much of _chunks[0] has been consumed
        self._buffered = 0  # unconsumed bytes across _chunks
        self._state = _PDU_HEADER
        self._error: RemoteProtocolError | None = None
        self._header = b""  # header of the PDU whose body is being buffered
        self._body = bytearray()
        self._body_remaining = 0
        self._pdu_remaining = 0  # P-DATA-TF body bytes not yet parsed
        self._pdv_remaining = 0  # data bytes of the current PDV not yet handed out
        self._context_id = 0
        self._is_command = False
        self._is_last = False

    @property
    def max_pdata_length(self) -> int | None:
        """The largest P-DATA-TF body accepted, or None to use ``max_pdu_length``."""
        return self._max_pdata_length

    @max_pdata_length.setter
    def max_pdata_length(self, value: int | None) -> None:
        # "0 = no limit" (PS3.8 D.1) is for what a peer accepts from us: we always cap.
        if value is not None and value < 1:
            raise ValueError("max_pdata_length must be a positive number of bytes or None")
        self._max_pdata_length = value

    @property
    def at_pdu_boundary(self) -> bool:
        """True when no part of a PDU is buffered or in progress (a clean place to close).

        False after a protocol error.
        """
        return self._state == _PDU_HEADER and self._buffered == 0 and self._error is None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes received from the peer (referenced, not copied)."""
        if self._error is not None:
            raise self._error
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")  # indexing must give ints, slicing must count bytes
        if len(view):
            self._chunks.append(view)
            self._buffered += len(view)

    def next_item(self) -> PDU | PDataStarted | PDVFragment | None:
        """The next complete item, or None when more bytes are needed."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_item()
        except RemoteProtocolError as exc:
            self._error = exc
            self._chunks.clear()
            self._buffered = 0
            self._body = bytearray()
            raise

    # The states below are tested in order of how often they are hit on a busy link.
    def _next_item(self) -> PDU | PDataStarted | PDVFragment | None:
        while True:
            state = self._state
            if state == _PDV_DATA:
                return self._pdv_data()
            if state == _PDV_HEADER:
                fragment = self._pdv_header()
                if fragment is not None or self._state != _PDV_DATA:
                    return fragment
            elif state == _PDU_HEADER:
                started = self._pdu_header()
                if started is not None or self._state != _BODY:
                    return started
            else:
                return self._pdu_body()

    def _pdv_data(self) -> PDVFragment | None:
        if not self._buffered:
            return None
        chunk = self._chunks[0]
        offset = self._offset
        available = len(chunk) - offset
        remaining = self._pdv_remaining
        if available <= remaining:
            # The rest of this chunk belongs to the PDV: hand it all out.
            piece = chunk[offset:] if offset else chunk
            self._chunks.popleft()
            self._offset = 0
            taken = available
        else:
            piece = chunk[offset : offset + remaining]
            self._offset = offset + remaining
            taken = remaining
        self._buffered -= taken
        remaining -= taken
        self._pdv_remaining = remaining
        if not remaining:
            self._state = _PDV_HEADER if self._pdu_remaining else _PDU_HEADER
        return PDVFragment(self._context_id, self._is_command, self._is_last, not remaining, piece)

    def _pdv_header(self) -> PDVFragment | None:
        # PS3.8 9.3.5.1: every PDV item needs its 4-byte length, context ID and message
        # control header; leftover PDU bytes too few for that are malformed.
        if self._pdu_remaining < PDV_HEADER_LENGTH:
            raise _invalid(
                f"{self._pdu_remaining} bytes left in the P-DATA-TF, too few for a PDV item"
            )
        header = self._take(PDV_HEADER_LENGTH)
        if header is None:
            return None
        item_length, context_id, control = PDV_HEADER.unpack(header)
        # Item-length counts the context ID and control header, so it is at least 2.
        if item_length < 2:
            raise _invalid(f"PDV Item-length {item_length} < 2")
        pdu_remaining = self._pdu_remaining - 4 - item_length
        if pdu_remaining < 0:
            raise _invalid(
                f"PDV Item-length {item_length} runs past the P-DATA-TF "
                f"({self._pdu_remaining - 4} bytes left)"
            )
        self._pdu_remaining = pdu_remaining
        self._pdv_remaining = item_length - 2
        self._context_id = context_id
        self._is_command = bool(control & _COMMAND_BIT)
        self._is_last = bool(control & _LAST_BIT)
        if item_length == 2:
            # A PDV with no data: report it now, as there will be no bytes to wait for.
            self._state = _PDV_HEADER if pdu_remaining else _PDU_HEADER
            return PDVFragment(context_id, self._is_command, self._is_last, True, _EMPTY)
        self._state = _PDV_DATA
        return None

    def _pdu_header(self) -> PDataStarted | None:
        if not self._buffered:
            return None
        # Check the type on the first byte alone (see the module docstring).
        pdu_type = self._chunks[0][self._offset]
        if pdu_type not in _KNOWN_PDU_TYPES:
            raise RemoteProtocolError(
                f"unrecognised PDU type 0x{pdu_type:02X}",
                abort_reason=AbortReason.UNRECOGNIZED_PDU,
            )
        header = self._take(PDU_HEADER_LENGTH)
        if header is None:
            return None
        _, _, length = PDU_HEADER.unpack(header)
        if pdu_type == _P_DATA_TF:
            cap = self._max_pdata_length or self.max_pdu_length
            if length > cap:
                # PS3.8 Annex D.1: the peer must not exceed the Maximum Length we sent.
                raise _invalid(f"P-DATA-TF of {length} bytes exceeds the maximum {cap}")
            if length < PDV_HEADER_LENGTH:
                raise _invalid(f"P-DATA-TF of {length} bytes cannot hold a PDV item")
            self._pdu_remaining = length
            self._state = _PDV_HEADER
            return PDataStarted(length)
        if pdu_type in _FIXED_LENGTH_TYPES:
            if length != _FIXED_BODY_LENGTH:
                raise _invalid(f"PDU type 0x{pdu_type:02X} with PDU-length {length}, must be 4")
        elif length > self.max_pdu_length:
            raise _invalid(
                f"PDU type 0x{pdu_type:02X} declares {length} bytes, "
                f"more than the {self.max_pdu_length} accepted"
            )
        self._header = bytes(header)
        self._body_remaining = length
        self._state = _BODY
        return None

    def _pdu_body(self) -> PDU | None:
        # Grows with the bytes that actually arrive, never from the declared length.
        body = self._body
        while self._body_remaining and self._buffered:
            chunk = self._chunks[0]
            offset = self._offset
            end = min(len(chunk), offset + self._body_remaining)
            body += chunk[offset:end]
            self._body_remaining -= end - offset
            self._buffered -= end - offset
            if end == len(chunk):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
        if self._body_remaining:
            return None
        self._state = _PDU_HEADER
        self._body = bytearray()
        return decode_pdu(self._header + body)

    def _take(self, size: int) -> memoryview | bytearray | None:
        """Consume exactly ``size`` (a header's worth of) bytes, or nothing if not all here."""
        if self._buffered < size:
            return None
        self._buffered -= size
        chunk = self._chunks[0]
        offset = self._offset
        end = offset + size
        if end < len(chunk):
            self._offset = end
            return chunk[offset:end]
        if end == len(chunk):
            self._chunks.popleft()
            self._offset = 0
            return chunk[offset:end]
        # The header straddles fed chunks: gather its few bytes.
        gathered = bytearray()
        while len(gathered) < size:
            chunk = self._chunks[0]
            end = self._offset + size - len(gathered)
            gathered += chunk[self._offset : end]
            if end >= len(chunk):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
        return gathered


__all__ = ["DEFAULT_MAX_PDU_LENGTH", "PDUReader"]

"""Well-formed DICOM sessions as trees of PDUs, items and PDVs, for the SCP fuzz suite.

Pure: no sockets, no clock. A session (A-ASSOCIATE-RQ, C-ECHO, C-STORE of a small data
set, A-RELEASE-RQ) is built as a tree of :class:`Node` values (PDU -> item -> sub-item,
P-DATA-TF -> PDV), so that a mutator can change one field of one layer and the bytes
around it stay well formed: a length that is wrong, a type that is unknown, a context
ID that is even, a command set with no Command Field... The tree is serialised by hand
(not through ``encode_pdu``, which refuses invalid values); the unmutated templates are
checked against ``encode_pdu`` by the tests.

The mutators that break these sessions live in :mod:`fuzz_cases`.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field, replace

# --- Vocabulary ---------------------------------------------------------------------------------

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1337.1"
UID_ROOT = "1.2.826.0.1.3680043.10.1337"

# The Maximum Length the fuzz server is started with (``-pdu``): small, so that a P-DATA
# one byte too long costs 16 KiB to send, and data sets of a few KiB span several PDUs.
SERVER_MAX_PDU = 16384
CALLED_AE = "AIODICOM"
CALLING_AE = "FUZZER"

# Outcomes of a case, as the runner classifies them.
RJ = "rj"  # an A-ASSOCIATE-RJ came back
ABORT = "abort"  # an A-ABORT came back
CLOSE = "close"  # the server closed without an RJ, A-ABORT or A-RELEASE-RP
VALID = "valid"  # the session ran to its A-RELEASE-RP
ANY = frozenset({RJ, ABORT, CLOSE, VALID})
PROTOCOL_ERROR = frozenset({ABORT, CLOSE})

# Context IDs of the template A-ASSOCIATE-RQ (PS3.8 9.3.2.2: odd, 1-255).
ECHO_CONTEXT = 1
STORE_CONTEXT = 3
SUCCESS = 0x0000

# --- The tree -----------------------------------------------------------------------------------

# Header layouts: PS3.8 9.3.1 (PDU: type, reserved, 4-byte length), 9.3.2.1 (item: type,
# reserved, 2-byte length), 9.3.5.1 (PDV: 4-byte length, context ID, control header;
# its length counts the two bytes after it).
_PDU_HEADER = struct.Struct(">BBL")
_ITEM_HEADER = struct.Struct(">BBH")
_PDV_HEADER = struct.Struct(">LBB")


@dataclass
class Node:
    """One PDU, item, sub-item or PDV.

    ``kind`` is "pdu", "item" or "pdv". For a PDV, ``type`` is the presentation context
    ID and ``flags`` the message control header; otherwise ``flags`` is the reserved byte.
    ``prefix`` holds the fixed fields before the children (the 68 bytes of an
    A-ASSOCIATE-RQ, the 4 of a presentation context). ``length`` overrides the length
    written in the header (None: the true one).
    """

    kind: str
    type: int
    flags: int = 0
    prefix: bytes = b""
    children: list[Node] | None = None
    value: bytes = b""
    length: int | None = None

    def content(self) -> bytes:
        if self.children is None:
            return self.prefix + self.value
        return self.prefix + b"".join(child.encode() for child in self.children)

    def encode(self) -> bytes:
        body = self.content()
        if self.kind == "pdu":
            length = len(body) if self.length is None else self.length
            return _PDU_HEADER.pack(self.type, self.flags, length & 0xFFFFFFFF) + body
        if self.kind == "item":
            length = len(body) if self.length is None else self.length
            return _ITEM_HEADER.pack(self.type, self.flags, length & 0xFFFF) + body
        length = len(body) + 2 if self.length is None else self.length
        return _PDV_HEADER.pack(length & 0xFFFFFFFF, self.type, self.flags) + body

    def copy(self) -> Node:
        children = None if self.children is None else [child.copy() for child in self.children]
        return replace(self, children=children)


def walk(node: Node, parent: Node | None = None) -> list[tuple[Node, Node | None]]:
    """Every node below and including ``node``, with its parent."""
    found = [(node, parent)]
    for child in node.children or ():
        found.extend(walk(child, node))
    return found


def item(item_type: int, value: bytes = b"", children: list[Node] | None = None) -> Node:
    return Node("item", item_type, children=children, value=value)


def _ae(title: str | bytes) -> bytes:
    raw = title.encode("ascii") if isinstance(title, str) else title
    return raw.ljust(16, b" ")[:16]


def associate_rq(
    contexts: list[tuple[int, str, list[str]]],
    *,
    called: bytes | str = CALLED_AE,
    calling: bytes | str = CALLING_AE,
    max_length: int = 16384,
) -> Node:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2): application context, contexts, user information."""
    prefix = (
        (1).to_bytes(2, "big") + b"\0\0" + _ae(called) + _ae(calling) + b"\0" * 32
    )  # Table 9-11: version, reserved, called, calling, 32 reserved
    children = [item(0x10, APPLICATION_CONTEXT.encode())]
    for context_id, abstract, syntaxes in contexts:
        children.append(presentation_context(context_id, abstract, syntaxes))
    user_items = [
        item(0x51, max_length.to_bytes(4, "big")),
        item(0x52, IMPLEMENTATION_UID.encode()),
        item(0x55, b"FUZZ_1"),
    ]
    children.append(item(0x50, children=user_items))
    return Node("pdu", 0x01, prefix=prefix, children=children)


def presentation_context(context_id: int, abstract: str, syntaxes: list[str]) -> Node:
    # PS3.8 9.3.2.2 Table 9-14: ID, 3 reserved bytes, abstract syntax, transfer syntaxes.
    sub_items = [item(0x30, abstract.encode())]
    sub_items += [item(0x40, syntax.encode()) for syntax in syntaxes]
    return Node("item", 0x20, prefix=bytes([context_id, 0, 0, 0]), children=sub_items)


TEMPLATE_CONTEXTS: list[tuple[int, str, list[str]]] = [
    (ECHO_CONTEXT, VERIFICATION, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
    (STORE_CONTEXT, CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
]


def release_rq() -> Node:
    return Node("pdu", 0x05, value=b"\0\0\0\0")  # PS3.8 9.3.6: 4 reserved bytes


def pdata(pdvs: list[Node]) -> Node:
    return Node("pdu", 0x04, children=pdvs)


def pdv(context_id: int, control: int, data: bytes) -> Node:
    return Node("pdv", context_id, flags=control, value=data)


# --- Command sets (PS3.7 E.1, implicit VR little endian) ------------------------------------------

_COMMAND_ELEMENT = struct.Struct("<HHL")


def us(value: int) -> bytes:
    return value.to_bytes(2, "little")


def _ui(uid: str) -> bytes:
    raw = uid.encode("latin-1")
    return raw + b"\0" if len(raw) % 2 else raw


def echo_command(message_id: int) -> list[tuple[int, bytes]]:
    # PS3.7 Table 9.3-12: Affected SOP Class, Command Field 0x0030, Message ID, no data set.
    return [
        (0x0002, _ui(VERIFICATION)),
        (0x0100, us(0x0030)),
        (0x0110, us(message_id)),
        (0x0800, us(0x0101)),
    ]


def store_command(
    message_id: int, sop_instance_uid: str, sop_class_uid: str = CT_IMAGE_STORAGE
) -> list[tuple[int, bytes]]:
    # PS3.7 Table 9.3-1: C-STORE-RQ, Command Field 0x0001, priority, data set present.
    return [
        (0x0002, _ui(sop_class_uid)),
        (0x0100, us(0x0001)),
        (0x0110, us(message_id)),
        (0x0700, us(0x0000)),
        (0x0800, us(0x0000)),
        (0x1000, _ui(sop_instance_uid)),
    ]


def encode_command_elements(
    elements: list[tuple[int, bytes]], *, group_length: int | None = None
) -> bytes:
    """Command Group Length (0000,0000) UL first, then the elements as given (PS3.7 E.1)."""
    body = b"".join(
        _COMMAND_ELEMENT.pack(0, element, len(value)) + value for element, value in elements
    )
    length = len(body) if group_length is None else group_length
    return _COMMAND_ELEMENT.pack(0, 0, 4) + (length & 0xFFFFFFFF).to_bytes(4, "little") + body


# --- Data sets (PS3.5 7.1.2, explicit VR little endian) -------------------------------------------

_LONG_VRS = frozenset({b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL"})


def element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHL", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def nested_sequence(depth: int) -> bytes:
    """(0040,A730) Content Sequence nested ``depth`` deep, undefined lengths (PS3.5 7.5)."""
    inner = element(0x0040, 0xA040, b"CS", b"TEXT")
    for _ in range(depth):
        item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\0\0\0\0"
        inner = (
            struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
            + item
            + b"\xfe\xff\xdd\xe0\0\0\0\0"
        )
    return inner


def dataset(
    sop_instance_uid: str,
    *,
    payload: bytes = b"",
    sop_class_uid: str = CT_IMAGE_STORAGE,
    patient_id: bytes = b"FUZZ",
    extra: bytes = b"",
) -> bytes:
    """A small CT data set in ascending tag order; ``payload`` goes in (7FE0,0010) OW."""
    study = f"{UID_ROOT}.1"
    series = f"{UID_ROOT}.2"
    parts = [
        element(0x0008, 0x0016, b"UI", sop_class_uid.encode("latin-1")),
        element(0x0008, 0x0018, b"UI", sop_instance_uid.encode("latin-1")),
        element(0x0008, 0x0060, b"CS", b"CT"),
        element(0x0010, 0x0010, b"PN", b"FUZZ^CASE"),
        element(0x0010, 0x0020, b"LO", patient_id),
        element(0x0020, 0x000D, b"UI", study.encode()),
        element(0x0020, 0x000E, b"UI", series.encode()),
        extra,
    ]
    if payload:
        parts.append(element(0x7FE0, 0x0010, b"OW", payload))
    return b"".join(parts)


def message_pdus(
    context_id: int, command: bytes, data: bytes | None, max_pdu: int = SERVER_MAX_PDU
) -> list[Node]:
    """The P-DATA-TF PDUs of one message, one PDV each, cut to ``max_pdu`` (PS3.8 E.1)."""
    room = max_pdu - 6  # PS3.8 9.3.5.1: 6 bytes of PDV header inside the PDU body
    room -= room % 2  # PS3.8 E.1: fragments of even length
    pdus = [
        pdata([pdv(context_id, 0x01 | (0x02 if end >= len(command) else 0), command[start:end])])
        for start in range(0, len(command), room)
        for end in [min(start + room, len(command))]
    ]
    if data is not None:
        if not data:
            pdus.append(pdata([pdv(context_id, 0x02, b"")]))
        for start in range(0, len(data), room):
            end = min(start + room, len(data))
            control = 0x02 if end >= len(data) else 0x00
            pdus.append(pdata([pdv(context_id, control, data[start:end])]))
    return pdus


# --- Sessions -------------------------------------------------------------------------------------


@dataclass
class Session:
    """The PDUs of one connection, with what they should achieve when left intact."""

    pdus: list[Node]
    # SOP Instance UID -> data set bytes of every store in the session.
    stores: dict[str, bytes] = field(default_factory=dict)
    messages: int = 0  # DIMSE requests that expect a response

    def encode(self) -> bytes:
        return b"".join(pdu.encode() for pdu in self.pdus)


TEMPLATES = ("associate", "echo", "store", "store_fragmented", "echo_store_store")


def build_session(kind: str, uid_base: str, rng: random.Random) -> Session:
    """A well-formed session of ``kind`` whose stores use UIDs under ``uid_base``."""
    rq = associate_rq([(c, a, list(s)) for c, a, s in TEMPLATE_CONTEXTS])
    session = Session([rq])
    message_id = 1
    if kind in ("echo", "echo_store_store"):
        command = encode_command_elements(echo_command(message_id))
        session.pdus += message_pdus(ECHO_CONTEXT, command, None)
        session.messages += 1
        message_id += 1
    store_count = {"store": 1, "store_fragmented": 1, "echo_store_store": 2}.get(kind, 0)
    for number in range(store_count):
        uid = f"{uid_base}.{number + 1}"
        payload = rng.randbytes(rng.choice((0, 2, 64, 2048, 20000)))
        data = dataset(uid, payload=payload)
        command = encode_command_elements(store_command(message_id, uid))
        if kind == "store_fragmented":
            session.pdus += _fragmented(command, data, rng)
        else:
            session.pdus += message_pdus(STORE_CONTEXT, command, data)
        session.stores[uid] = data
        session.messages += 1
        message_id += 1
    session.pdus.append(release_rq())
    return session


def _fragmented(command: bytes, data: bytes, rng: random.Random) -> list[Node]:
    """The command in two PDVs in two PDUs, the data set in several PDVs per PDU."""
    cut = rng.randrange(2, len(command) - 1, 2)
    pdus = [
        pdata([pdv(STORE_CONTEXT, 0x01, command[:cut])]),
        pdata([pdv(STORE_CONTEXT, 0x03, command[cut:])]),
    ]
    pieces: list[Node] = []
    start = 0
    while start < len(data):
        end = min(len(data), start + rng.randrange(2, 4000, 2))
        pieces.append(pdv(STORE_CONTEXT, 0x02 if end >= len(data) else 0x00, data[start:end]))
        start = end
    # Several PDVs per P-DATA-TF, each PDU under the server's Maximum Length.
    group: list[Node] = []
    for piece in pieces:
        if group and sum(len(p.value) + 6 for p in group) + len(piece.value) + 6 > SERVER_MAX_PDU:
            pdus.append(pdata(group))
            group = []
        group.append(piece)
    if group:
        pdus.append(pdata(group))
    return pdus


# --- Cases ----------------------------------------------------------------------------------------


@dataclass
class Case:
    """One connection's worth of bytes, and what the server may answer."""

    seed: int
    index: int
    layer: str
    name: str
    data: bytes
    expect: frozenset[str] = ANY
    # Statuses acceptable for every C-STORE-RSP (None: any).
    expect_status: frozenset[int] | None = None
    # A-ASSOCIATE-RJ (result, source, reason) acceptable, when it matters (None: any).
    expect_reject: frozenset[tuple[int, int, int]] | None = None
    # UID -> data set bytes of stores whose data set reaches the server unchanged:
    # a success for one of these must leave exactly these bytes on disk.
    exact_stores: dict[str, bytes] = field(default_factory=dict)
    # How the bytes are cut into writes (offsets); empty: one write.
    splits: tuple[int, ...] = ()
    # Where the A-ASSOCIATE-RQ ends: the rest is sent once the server has answered it, as
    # a requestor must (PS3.8 Table 9-10: P-DATA only in Sta6). 0: everything at once.
    rq_end: int = 0

    @property
    def label(self) -> str:
        return f"seed={self.seed} case={self.index} {self.layer}/{self.name}"

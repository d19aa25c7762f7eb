"""Hostile cases for the SCP fuzz suite: the sessions of :mod:`fuzz_sessions`, mutated.

Each generator below builds one session and breaks one field of one layer (PDU header,
item, AE title, presentation context, PDV, command set, data set), or sends what is not
DICOM at all (the inputs of ANCHORS.md, random bytes). :func:`generate_case` is a pure
function of ``(seed, index)``: every case reproduces on its own. Each case says which
answers are acceptable (``expect``), so that the runner can fail a case that got a
well-formed but wrong answer, not only a hang or a crash.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from fuzz_sessions import (
    ABORT,
    ANY,
    CLOSE,
    CT_IMAGE_STORAGE,
    ECHO_CONTEXT,
    EXPLICIT_VR_LE,
    MR_IMAGE_STORAGE,
    PROTOCOL_ERROR,
    RJ,
    SERVER_MAX_PDU,
    STORE_CONTEXT,
    SUCCESS,
    TEMPLATE_CONTEXTS,
    TEMPLATES,
    UID_ROOT,
    VALID,
    Case,
    Session,
    associate_rq,
    build_session,
    dataset,
    echo_command,
    element,
    encode_command_elements,
    item,
    message_pdus,
    nested_sequence,
    pdata,
    pdv,
    presentation_context,
    release_rq,
    store_command,
    us,
    walk,
)

Mutator = Callable[[random.Random, Session, "Case"], None]


def _pdu_of_type(session: Session, pdu_type: int) -> list[int]:
    return [i for i, pdu in enumerate(session.pdus) if pdu.type == pdu_type and pdu.kind == "pdu"]


def _session_for(rng: random.Random, uid_base: str, kinds: tuple[str, ...] = TEMPLATES) -> Session:
    return build_session(rng.choice(kinds), uid_base, rng)


# Each generator below builds its own session and case; it returns (layer, name, session,
# updates) where updates are fields of the Case to set.


def _finish(
    seed: int, index: int, layer: str, name: str, session: Session, **updates: object
) -> Case:
    case = Case(seed, index, layer, name, session.encode())
    case.exact_stores = dict(session.stores)
    case.rq_end = len(session.pdus[0].encode()) if session.pdus[0].type == 0x01 else 0
    for key, value in updates.items():
        setattr(case, key, value)
    return case


def _valid_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    kind = rng.choice(TEMPLATES)
    session = build_session(kind, uid_base, rng)
    return _finish(
        seed,
        index,
        "valid",
        kind,
        session,
        expect=frozenset({VALID}),
        expect_status=frozenset({SUCCESS}),
    )


def _pdu_header_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    session = _session_for(rng, uid_base)
    position = rng.randrange(len(session.pdus))
    target = session.pdus[position]
    true_length = len(target.content())
    choice = rng.randrange(6)
    expect = ANY
    if choice == 0:
        new_type = rng.choice([0x00, 0x08, 0x09, 0x10, 0x16, 0x47, 0x80, 0xFF])
        name = f"pdu{position}-type-0x{new_type:02X}"
        target.type = new_type
        expect = PROTOCOL_ERROR  # PS3.8 Table 9-10 Evt19: unrecognised PDU
    elif choice == 1:
        new_type = rng.choice([t for t in range(1, 8) if t != target.type])
        name = f"pdu{position}-type-{target.type}-to-{new_type}"
        target.type = new_type
        expect = frozenset({ABORT, CLOSE, RJ})
    elif choice == 2:
        # PS3.8 9.3.1: the reserved byte is "not tested": the session must still work.
        target.flags = rng.randrange(1, 256)
        name = f"pdu{position}-reserved-0x{target.flags:02X}"
        expect = frozenset({VALID})
        return _finish(
            seed,
            index,
            "pdu-header",
            name,
            session,
            expect=expect,
            expect_status=frozenset({SUCCESS}),
        )
    else:
        length = rng.choice(
            [
                0,
                1,
                3,
                true_length - 1,
                true_length + 1,
                true_length + 2,
                true_length // 2,
                0xFFFF,
                0x7FFFFFFF,
                0xFFFFFFFF,
                rng.randrange(0, 1 << 32),
            ]
        )
        length = max(0, length)
        if length == true_length:
            length += 2
        target.length = length
        name = f"pdu{position}-length-{length}-of-{true_length}"
        if length < true_length and position == 0:
            expect = frozenset({ABORT, CLOSE, RJ})
    case = _finish(seed, index, "pdu-header", name, session, expect=expect)
    if position == 0:
        case.rq_end = 0  # the RQ's own framing is broken: no boundary to wait at
    return case


def _item_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    """Items and sub-items of the A-ASSOCIATE-RQ."""
    session = _session_for(rng, uid_base)
    rq = session.pdus[0]
    nodes = [(node, parent) for node, parent in walk(rq) if parent is not None]
    node, parent = rng.choice(nodes)
    assert parent is not None and parent.children is not None
    where = f"item-0x{node.type:02X}"
    true_length = len(node.content())
    choice = rng.randrange(9)
    expect = ANY
    if choice == 0:
        # Beyond the parent: more than the bytes that follow inside the parent item/PDU.
        siblings_after = parent.children[parent.children.index(node) + 1 :]
        room = true_length + sum(len(s.encode()) for s in siblings_after)
        node.length = min(0xFFFF, room + rng.choice([1, 2, 100, 0xFFFF]))
        name = f"{where}-length-beyond-parent"
        if node.length > room:
            # PS3.8 9.3.8 / ANCHORS: a sub-item running past its parent is A-ABORT.
            expect = frozenset({ABORT})
    elif choice == 1:
        node.length = rng.choice([0, 1, 2, 3, max(0, true_length - 1), max(0, true_length - 2)])
        name = f"{where}-length-short-{node.length}-of-{true_length}"
    elif choice == 2:
        node.length = min(0xFFFF, true_length + rng.choice([1, 2, 4]))
        name = f"{where}-length-long-{node.length}-of-{true_length}"
    elif choice == 3:
        node.length = 0xFFFF
        name = f"{where}-length-0xFFFF"
    elif choice == 4:
        old = node.type
        node.type = rng.choice([0x00, 0x11, 0x21, 0x31, 0x41, 0x5A, 0x60, 0x7F, 0xFF])
        name = f"item-0x{old:02X}-type-0x{node.type:02X}"
    elif choice == 5:
        parent.children.remove(node)
        name = f"{where}-removed"
    elif choice == 6:
        parent.children.insert(parent.children.index(node), node.copy())
        name = f"{where}-duplicated"
    elif choice == 7:
        # PS3.8 9.3.2.1: reserved bytes are not tested.
        node.flags = rng.randrange(1, 256)
        name = f"{where}-reserved-0x{node.flags:02X}"
        return _finish(
            seed,
            index,
            "item",
            name,
            session,
            expect=frozenset({VALID}),
            expect_status=frozenset({SUCCESS}),
        )
    else:
        garbage = rng.randbytes(rng.randrange(0, 40))
        if node.children is None:
            node.value = garbage
        else:
            node.children.append(item(rng.randrange(256), garbage))
        name = f"{where}-garbage-{len(garbage)}"
    return _finish(seed, index, "item", name, session, expect=expect)


def _unknown_items_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    """Items the standard says to skip: the association must still work."""
    session = _session_for(rng, uid_base)
    rq = session.pdus[0]
    assert rq.children is not None
    if rng.random() < 0.5:
        # PS3.8 9.3.1: an item of unrecognised type "shall be ignored and skipped".
        item_type = rng.choice([0x11, 0x22, 0x60, 0x7F, 0xF0])
        rq.children.insert(rng.randrange(1, len(rq.children)), item(item_type, rng.randbytes(7)))
        name = f"unknown-item-0x{item_type:02X}"
    else:
        # PS3.8 D.1: unknown User Information sub-items are ignored.
        user_info = rq.children[-1]
        assert user_info.children is not None
        item_type = rng.choice([0x5A, 0x5F, 0x70, 0xEE])
        user_info.children.append(item(item_type, rng.randbytes(9)))
        name = f"unknown-user-item-0x{item_type:02X}"
    return _finish(
        seed,
        index,
        "item",
        name,
        session,
        expect=frozenset({VALID}),
        expect_status=frozenset({SUCCESS}),
    )


def _ae_title_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    session = _session_for(rng, uid_base)
    rq = session.pdus[0]
    which = rng.choice(["called", "calling"])
    title, label, expect = rng.choice(
        [
            (b"\xe9\xe8\xff\x80", "non-ascii", frozenset({ABORT, RJ})),
            (b"\0" * 16, "all-nul", frozenset({VALID, RJ, ABORT})),
            (b"AB\0CD", "embedded-nul", frozenset({VALID, RJ, ABORT})),
            (b" " * 16, "empty", frozenset({VALID, RJ})),
            (b"\\/..\x01\x1b[", "controls", frozenset({VALID, RJ, ABORT})),
            (b"..", "dot-dot", frozenset({VALID, RJ})),
            (b"  LEADING", "leading-spaces", frozenset({VALID, RJ})),
        ]
    )
    raw = title.ljust(16, b" ")[:16]
    offset = 4 if which == "called" else 20
    rq.prefix = rq.prefix[:offset] + raw + rq.prefix[offset + 16 :]
    return _finish(seed, index, "ae-title", f"{which}-{label}", session, expect=expect)


def _context_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    kind = rng.choice(TEMPLATES)
    session = build_session(kind, uid_base, rng)
    rq = session.pdus[0]
    assert rq.children is not None
    contexts = [c for c in rq.children if c.type == 0x20]
    uses_store = bool(session.stores)
    uses_echo = kind in ("echo", "echo_store_store")
    choice = rng.randrange(10)
    updates: dict[str, object] = {}
    reject_provider = frozenset({(1, 2, 1), (2, 2, 1), (1, 1, 1), (2, 1, 1)})
    if choice == 0:
        target = rng.choice(contexts)
        target.prefix = bytes([rng.choice([0, 2, 4, 254])]) + target.prefix[1:]
        name = f"even-id-{target.prefix[0]}"
        # PS3.8 9.3.2.2: IDs are odd; the request is malformed as a whole.
        updates = {"expect": frozenset({RJ, ABORT})}
    elif choice == 1:
        rq.children.insert(2, contexts[0].copy())
        name = "duplicate-id"
        updates = {"expect": frozenset({RJ, ABORT})}
    elif choice == 2:
        target = contexts[1]
        assert target.children is not None
        target.children = target.children[:1]
        name = "no-transfer-syntax"
        # The CT context is refused; a store on it is a PDV on an unaccepted context.
        updates = {"expect": frozenset({ABORT, RJ}) if uses_store else frozenset({VALID, RJ})}
    elif choice == 3:
        extra = [
            presentation_context(5 + 2 * n, MR_IMAGE_STORAGE, [EXPLICIT_VR_LE]) for n in range(126)
        ]
        # IDs 1, 3, 5..255 are all 128 odd values: the 129th repeats one.
        extra.append(
            presentation_context(rng.randrange(1, 256, 2), MR_IMAGE_STORAGE, [EXPLICIT_VR_LE])
        )
        rq.children[3:3] = extra
        name = "129-contexts"
        # 129 contexts cannot all have distinct odd IDs (PS3.8 9.3.2.2).
        updates = {"expect": frozenset({RJ, ABORT})}
    elif choice == 4:
        extra = [
            presentation_context(5 + 2 * n, MR_IMAGE_STORAGE, [EXPLICIT_VR_LE]) for n in range(126)
        ]
        rq.children[3:3] = extra
        name = "128-contexts"
        updates = {"expect": frozenset({VALID}), "expect_status": frozenset({SUCCESS})}
    elif choice == 5:
        for context in contexts:
            rq.children.remove(context)
        name = "no-contexts"
        updates = {"expect": frozenset({RJ, ABORT})}
    elif choice == 6:
        target = rng.choice(contexts)
        assert target.children is not None
        target.children = target.children[1:]
        name = f"context-{target.prefix[0]}-no-abstract-syntax"
        updates = {"expect": frozenset({ABORT, RJ})}
    elif choice == 7:
        target = rng.choice(contexts)
        assert target.children is not None
        target.children.insert(1, item(0x30, MR_IMAGE_STORAGE.encode()))
        name = f"context-{target.prefix[0]}-two-abstract-syntaxes"
        updates = {"expect": frozenset({ABORT, RJ})}
    elif choice == 8:
        target = contexts[1]
        assert target.children is not None
        target.children[0] = item(0x30, b"1.2.3.999.1")
        name = "unknown-abstract-syntax"
        updates = {"expect": frozenset({ABORT}) if uses_store else frozenset({VALID})}
    else:
        target = rng.choice(contexts)
        assert target.children is not None
        syntax = rng.choice([b"", b"1.2.3.4", b"\xff\xfe", b"1.2.840.10008.1.2.1\0"])
        target.children[1:] = [item(0x40, syntax), *target.children[1:]]
        name = f"context-{target.prefix[0]}-odd-transfer-syntax"
        updates = {"expect": ANY}
    if "expect" in updates and updates["expect"] == frozenset({RJ, ABORT}):
        updates["expect_reject"] = reject_provider
    if not uses_echo and not uses_store and "expect_status" in updates:
        updates.pop("expect_status")
    return _finish(seed, index, "context", name, session, **updates)


def _header_fields_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    """Protocol version and application context (PS3.8 9.3.2, PS3.7 A.2.1)."""
    session = _session_for(rng, uid_base)
    rq = session.pdus[0]
    assert rq.children is not None
    choice = rng.randrange(4)
    if choice == 0:
        rq.prefix = (0).to_bytes(2, "big") + rq.prefix[2:]
        # PS3.8 9.3.4: RJ permanent, ACSE, protocol-version not supported.
        return _finish(
            seed,
            index,
            "associate",
            "version-0",
            session,
            expect=frozenset({RJ}),
            expect_reject=frozenset({(1, 2, 2)}),
        )
    if choice == 1:
        rq.prefix = (0x8003).to_bytes(2, "big") + rq.prefix[2:]
        # Only bit 0 is tested (PS3.8 9.3.2).
        return _finish(
            seed,
            index,
            "associate",
            "version-0x8003",
            session,
            expect=frozenset({VALID}),
            expect_status=frozenset({SUCCESS}),
        )
    if choice == 2:
        rq.children[0] = item(0x10, b"1.2.840.10008.3.1.1.2")
        # PS3.8 9.3.4: RJ permanent, service-user, application context not supported.
        return _finish(
            seed,
            index,
            "associate",
            "wrong-application-context",
            session,
            expect=frozenset({RJ}),
            expect_reject=frozenset({(1, 1, 2)}),
        )
    max_length = rng.choice([0, 1, 6, 100, 0xFFFFFFFF])
    user_info = rq.children[-1]
    assert user_info.children is not None
    user_info.children[0] = item(0x51, max_length.to_bytes(4, "big"))
    return _finish(
        seed, index, "associate", f"max-length-{max_length}", session, expect=frozenset({VALID, RJ})
    )


def _pdv_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    kind = rng.choice(("echo", "store", "store_fragmented", "echo_store_store"))
    session = build_session(kind, uid_base, rng)
    positions = _pdu_of_type(session, 0x04)
    pdu = session.pdus[rng.choice(positions)]
    assert pdu.children is not None
    target = rng.choice(pdu.children)
    true_length = len(target.value) + 2
    choice = rng.randrange(9)
    expect = ANY
    if choice == 0:
        target.length = rng.choice([0, 1])
        name = f"pdv-length-{target.length}"
        expect = frozenset({ABORT})  # PS3.8 9.3.5.1 / ANCHORS: length < 2
    elif choice == 1:
        target.length = true_length + rng.choice([1, 2, 1000, 0x7FFFFFFF])
        name = f"pdv-length-beyond-pdu-{target.length}"
        expect = frozenset({ABORT})
    elif choice == 2:
        target.type = rng.choice([0, 2, 5, 7, 255])
        name = f"pdv-context-{target.type}"
        expect = frozenset({ABORT})  # a context that was not accepted
    elif choice == 3:
        # PS3.8 E.2: bits 2-7 of the message control header are reserved.
        target.flags |= rng.choice([0x04, 0x80, 0xFC])
        name = f"pdv-reserved-bits-0x{target.flags:02X}"
        return _finish(
            seed,
            index,
            "pdv",
            name,
            session,
            expect=frozenset({VALID}),
            expect_status=frozenset({SUCCESS}),
        )
    elif choice == 4:
        target.flags ^= 0x01
        name = "pdv-command-bit-flipped"
        expect = frozenset({ABORT})
    elif choice == 5:
        target.flags ^= 0x02
        name = "pdv-last-bit-flipped"
    elif choice == 6:
        pdu.children.insert(pdu.children.index(target), pdv(target.type, target.flags & 0x01, b""))
        name = "pdv-empty-inserted"
    elif choice == 7:
        pdu.length = len(pdu.content()) + rng.choice([1, 5])
        name = f"pdata-length-plus-{pdu.length - len(pdu.content())}"
    else:
        target.value = target.value[: rng.randrange(0, max(1, len(target.value)))]
        name = "pdv-data-truncated"
    case = _finish(seed, index, "pdv", name, session, expect=expect)
    if choice in (5, 7, 8):
        # The data set the server sees is not the one built: no byte-for-byte check.
        case.exact_stores = {}
    return case


def _command_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    kind = rng.choice(("echo", "store"))
    session = build_session(kind, uid_base, rng)
    uid = next(iter(session.stores), f"{uid_base}.1")
    elements = echo_command(1) if kind == "echo" else store_command(1, uid)
    group_length: int | None = None
    choice = rng.randrange(11)
    expect = frozenset({ABORT})
    expect_status: frozenset[int] | None = None
    if choice == 0:
        group_length = len(encode_command_elements(elements)) - 12 + rng.choice([-4, -2, 2, 4])
        name = "group-length-wrong"
    elif choice == 1:
        group_length = rng.choice([0, 0xFFFFFFFF])
        name = f"group-length-{group_length}"
    elif choice == 2:
        position = rng.randrange(len(elements))
        name = f"missing-0000{elements[position][0]:04X}"
        del elements[position]
        expect = frozenset({ABORT, VALID})
    elif choice == 3:
        position = next(i for i, (tag, _) in enumerate(elements) if tag == 0x0110)
        elements[position] = (0x0110, rng.choice([b"\x01", b"\x01\0\0\0", b""]))
        name = f"message-id-length-{len(elements[position][1])}"
    elif choice == 4:
        command_field = rng.choice([0x0FFF, 0x0020, 0x0040, 0x0120, 0x7FFF])
        elements[1] = (0x0100, us(command_field))
        name = f"command-field-0x{command_field:04X}"
        # PS3.7 C.4.2: an unrecognised operation is answered with 0x0211.
        expect = frozenset({VALID, ABORT})
        expect_status = frozenset({0x0211})
    elif choice == 5:
        elements.reverse()
        name = "elements-descending"
    elif choice == 6:
        elements.insert(1, elements[1])
        name = "element-twice"
    elif choice == 7:
        elements.append((0x5555, b"\x01\x02"))
        elements.insert(0, (0x0001, b"\x03\x04"))
        name = "unknown-elements"  # (0000,0001) and (0000,5555): unknown, skipped
        expect = frozenset({VALID})
        expect_status = frozenset({SUCCESS})
    elif choice == 8:
        flip = 0x0000 if kind == "echo" else 0x0101
        position = next(i for i, (tag, _) in enumerate(elements) if tag == 0x0800)
        elements[position] = (0x0800, us(flip))
        name = f"data-set-type-0x{flip:04X}"
    elif choice == 9:
        raw_command = encode_command_elements(elements)
        cut = rng.randrange(1, len(raw_command))
        return _replace_command(
            seed, index, session, kind, raw_command[:cut], f"truncated-at-{cut}", frozenset({ABORT})
        )
    else:
        elements.append((0x0902, b"X" * 70000))
        name = "oversized-command"  # beyond MAX_COMMAND_SET_LENGTH (64 KiB)
    raw = encode_command_elements(elements, group_length=group_length)
    return _replace_command(seed, index, session, kind, raw, name, expect, expect_status)


def _replace_command(
    seed: int,
    index: int,
    session: Session,
    kind: str,
    command: bytes,
    name: str,
    expect: frozenset[str],
    expect_status: frozenset[int] | None = None,
) -> Case:
    context = ECHO_CONTEXT if kind == "echo" else STORE_CONTEXT
    data = next(iter(session.stores.values()), None)
    # The message PDUs of the template sit between the RQ and the RELEASE-RQ.
    session.pdus[1:-1] = message_pdus(context, command, data)
    case = _finish(
        seed, index, "command", name, session, expect=expect, expect_status=expect_status
    )
    return case


def _dataset_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    uid = f"{uid_base}.1"
    choice = rng.randrange(11)
    command_uid = uid
    expect = frozenset({VALID})
    failure = (
        frozenset(range(0xA700, 0xA800))
        | frozenset(range(0xA900, 0xAA00))
        | frozenset(range(0xC000, 0xD000))
    )
    expect_status: frozenset[int] | None = failure
    keep_exact = False
    if choice == 0:
        data = rng.randbytes(rng.randrange(1, 3000))
        name = "garbage"
    elif choice == 1:
        data = dataset(f"{uid}.99")
        name = "wrong-sop-instance-uid"
        expect_status = frozenset({0xA900})  # PS3.4 B.2.3, ANCHORS
    elif choice == 2:
        data = dataset(uid, sop_class_uid=MR_IMAGE_STORAGE)
        name = "wrong-sop-class-uid"
        expect_status = frozenset({0xA900})
    elif choice == 3:
        depth = rng.choice([10, 63, 64, 65, 300, 3000])
        data = dataset(uid, extra=nested_sequence(depth))
        name = f"nesting-{depth}"
        expect_status = None  # stored or refused, but answered
        keep_exact = True
    elif choice == 4:
        full = dataset(uid, payload=rng.randbytes(200))
        data = full[: rng.randrange(1, len(full))]
        name = f"truncated-{len(data)}-of-{len(full)}"
        expect_status = None
        keep_exact = True
    elif choice == 5:
        data = b""
        name = "empty"
    elif choice == 6:
        data = dataset(uid) + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        name = "trailing-item-tag"
        expect_status = None
        keep_exact = True
    elif choice == 7:
        evil = rng.choice(["../../../etc/x", "/tmp/x", "1.2/../../3", "1.2\\..\\3", ".."])
        data = dataset(evil)
        command_uid = evil
        name = f"path-traversal-uid-{evil!r}"
        expect_status = frozenset(range(0xC000, 0xD000)) | frozenset(range(0xA900, 0xAA00))
    elif choice == 8:
        patient = rng.choice([b"../..", b"/etc", b"..", b".", b"a\\b", b"\x00\x01", b"  "])
        data = dataset(uid, patient_id=patient)
        name = f"patient-id-{patient!r}"
        expect_status = frozenset({SUCCESS})  # mapped to a safe folder name
        keep_exact = True
    elif choice == 10:
        # Garbage after a command that has no data set (C-ECHO-RQ, type 0x0101).
        echo = encode_command_elements(echo_command(1))
        garbage = pdata([pdv(ECHO_CONTEXT, rng.choice([0x00, 0x02]), rng.randbytes(64))])
        rq = associate_rq([(c, a, list(s)) for c, a, s in TEMPLATE_CONTEXTS])
        session = Session([rq, *message_pdus(ECHO_CONTEXT, echo, None), garbage, release_rq()])
        # PS3.8 Annex E / PS3.7 6.3.1: no data set may follow: A-ABORT (after the echo's
        # response, which may or may not have left before the garbage was read).
        return _finish(
            seed, index, "dataset", "data-after-echo", session, expect=frozenset({ABORT})
        )
    else:
        huge = struct.pack("<HH2sHL", 0x0008, 0x0020, b"OB", 0, 0xFFFFFFF0)
        data = element(0x0008, 0x0016, b"UI", CT_IMAGE_STORAGE.encode()) + huge + b"\0" * 64
        name = "huge-element-length"
    command = encode_command_elements(store_command(1, command_uid))
    rq = associate_rq([(c, a, list(s)) for c, a, s in TEMPLATE_CONTEXTS])
    session = Session([rq, *message_pdus(STORE_CONTEXT, command, data), release_rq()])
    if keep_exact:
        session.stores[command_uid] = data
    return _finish(
        seed, index, "dataset", name, session, expect=expect, expect_status=expect_status
    )


def _random_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    choice = rng.randrange(6)
    session = _session_for(rng, uid_base)
    raw = bytearray(session.encode())
    if choice == 0:
        data = rng.randbytes(rng.randrange(1, 4000))
        name = f"random-bytes-{len(data)}"
        return Case(seed, index, "random", name, data)
    if choice == 1:
        for _ in range(rng.randrange(1, 9)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        name = "byte-flips"
    elif choice == 2:
        for _ in range(rng.randrange(1, 4)):
            position = rng.randrange(len(raw))
            if rng.random() < 0.5:
                del raw[position : position + rng.randrange(1, 16)]
            else:
                raw[position:position] = rng.randbytes(rng.randrange(1, 16))
        name = "insert-delete"
    elif choice == 3:
        raw = raw[: rng.randrange(1, len(raw))]
        name = f"truncated-session-{len(raw)}"
    elif choice == 4:
        other = _session_for(rng, uid_base + ".7").encode()
        raw = raw[: rng.randrange(len(raw))] + other[rng.randrange(len(other)) :]
        name = "spliced"
    else:
        # A valid RQ, then random bytes where the messages belong.
        raw = bytearray(session.pdus[0].encode()) + rng.randbytes(rng.randrange(1, 3000))
        name = "rq-then-random"
    return Case(seed, index, "random", name, bytes(raw))


def tls_client_hello_bytes() -> bytes:
    """A TLS 1.2/1.3 ClientHello record, as a browser or `openssl s_client` would start."""
    hello = bytes.fromhex(
        "010001fc0303" + "11" * 32 + "20" + "22" * 32 + "0004130113020100" + "01af"
    )
    body = hello + b"\0" * 0x1AF
    return b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body


def _anchor_case(rng: random.Random, seed: int, index: int, uid_base: str) -> Case:
    """The inputs of ANCHORS.md's "Failures seen in the field"."""
    choice = rng.randrange(7)
    rq = associate_rq([(c, a, list(s)) for c, a, s in TEMPLATE_CONTEXTS]).encode()
    if choice == 0:
        data = b"\x01\x00\xff\xff\xff\xf0" + b"\x00\x01" + b"\0" * 200
        return Case(seed, index, "anchor", "associate-rq-4GiB", data, expect=PROTOCOL_ERROR)
    if choice == 1:
        command = encode_command_elements(store_command(1, f"{uid_base}.1"))
        first = message_pdus(STORE_CONTEXT, command, None)[0].encode()
        too_long = SERVER_MAX_PDU + rng.choice([1, 2, 100])
        body_pdv = pdv(STORE_CONTEXT, 0x00, b"\0" * (too_long - 6)).encode()
        data = rq + first + b"\x04\x00" + too_long.to_bytes(4, "big") + body_pdv
        # PS3.8 Annex D.1: a P-DATA-TF longer than our Maximum Length is an A-ABORT.
        return Case(
            seed,
            index,
            "anchor",
            f"pdata-{too_long}-over-max",
            data,
            expect=frozenset({ABORT}),
            rq_end=len(rq),
        )
    if choice == 2:
        data = b"GET / HTTP/1.1\r\nHost: pacs\r\nUser-Agent: fuzz\r\n\r\n"
        return Case(seed, index, "anchor", "http-get", data, expect=PROTOCOL_ERROR)
    if choice == 3:
        return Case(
            seed,
            index,
            "anchor",
            "tls-client-hello",
            tls_client_hello_bytes(),
            expect=PROTOCOL_ERROR,
        )
    if choice == 4:
        # A 65 KB request whose sub-item claims more than is present (ANCHORS).
        big = associate_rq([(c, a, list(s)) for c, a, s in TEMPLATE_CONTEXTS])
        assert big.children is not None
        big.children.insert(1, item(0x60, b"\0" * 65000))
        big.children[-1].length = 0xFFFF
        return Case(
            seed, index, "anchor", "subitem-beyond-bytes", big.encode(), expect=frozenset({ABORT})
        )
    if choice == 5:
        data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        return Case(seed, index, "anchor", "http2-preface", data, expect=PROTOCOL_ERROR)
    # The RQ's header, then nothing: ARTIM must close it (PS3.8 9.1.4).
    return Case(seed, index, "anchor", "rq-header-then-silence", rq[:40], expect=PROTOCOL_ERROR)


# Weights: how often each layer is drawn.
_GENERATORS: list[tuple[int, Callable[[random.Random, int, int, str], Case]]] = [
    (6, _valid_case),
    (10, _pdu_header_case),
    (14, _item_case),
    (4, _unknown_items_case),
    (5, _ae_title_case),
    (10, _context_case),
    (4, _header_fields_case),
    (12, _pdv_case),
    (12, _command_case),
    (10, _dataset_case),
    (12, _random_case),
    (3, _anchor_case),
]
_WEIGHTS = [weight for weight, _ in _GENERATORS]


def generate_case(seed: int, index: int) -> Case:
    """Case ``index`` of the run with ``seed``: a pure function of the two numbers."""
    rng = random.Random(f"aiodicom-fuzz:{seed}:{index}")
    _, generator = rng.choices(_GENERATORS, weights=_WEIGHTS)[0]
    uid_base = f"{UID_ROOT}.{seed % 100000}.{index}"
    case = generator(rng, seed, index, uid_base)
    # Delivery: one write, a few random cuts, or the first bytes one at a time.
    delivery = rng.randrange(4)
    if delivery == 1 and len(case.data) > 2:
        cuts = sorted(rng.sample(range(1, len(case.data)), min(6, len(case.data) - 1)))
        case.splits = tuple(cuts)
    elif delivery == 2 and len(case.data) > 2:
        case.splits = tuple(range(1, min(len(case.data), 90)))
    return case

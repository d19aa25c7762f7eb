"""Real peers' A-ASSOCIATE-RQ, read off a socket and decoded (DCMTK echoscu/storescu,
pynetdicom), and pynetdicom decoding what we encode.

Each test listens on 127.0.0.1 port 0, starts the peer against it, reads bytes until the
PDUReader hands out one whole PDU, then closes the connection so the peer gives up.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from aiodicom.protocol.pdu import (
    AssociateRQ,
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
)
from aiodicom.protocol.pdu_codec import encode_pdu
from aiodicom.protocol.pdu_reader import PDUReader
from support import need_executable, need_module, pydicom_test_files

pytestmark = pytest.mark.peer

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
TIMEOUT = 20.0


@contextmanager
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(TIMEOUT)
    try:
        yield server
    finally:
        server.close()


def receive_associate_rq(server: socket.socket) -> tuple[AssociateRQ, bytes]:
    """Accept one connection and read one PDU from it; return it decoded and raw."""
    connection, _ = server.accept()
    with connection:
        connection.settimeout(TIMEOUT)
        reader = PDUReader()
        raw = bytearray()
        for _ in range(10_000):
            data = connection.recv(65536)
            assert data, "the peer closed before sending a whole PDU"
            raw += data
            reader.feed(data)
            item = reader.next_item()
            if item is not None:
                assert isinstance(item, AssociateRQ)
                assert reader.next_item() is None and reader.at_pdu_boundary
                return item, bytes(raw)
    raise AssertionError("no whole PDU after 10,000 reads")


def run_dcmtk(arguments: list[str], server: socket.socket) -> tuple[AssociateRQ, bytes]:
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        return receive_associate_rq(server)
    finally:
        try:
            process.communicate(timeout=TIMEOUT)  # it fails once we hang up: that is expected
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def run_in_thread(target: Callable[[], Any], server: socket.socket) -> tuple[AssociateRQ, bytes]:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        return receive_associate_rq(server)
    finally:
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def assert_same_bytes_but_reserved(ours: bytes, raw: bytes) -> None:
    """Our re-encoding equals the peer's bytes except in reserved fields, which we send as
    zeros (DCMTK, for one, puts 0xFF in a presentation context item's reserved bytes)."""
    assert len(ours) == len(raw)
    reserved = set(range(8, 10)) | set(range(42, 74)) | {1}  # PS3.8 Table 9-11
    position = 74
    while position < len(raw):  # the top-level items
        item_type = raw[position]
        if item_type == 0x20:  # PS3.8 Table 9-13: bytes 6-8 of the item are reserved
            reserved |= {position + 5, position + 6, position + 7}
        reserved.add(position + 1)
        position += 4 + int.from_bytes(raw[position + 2 : position + 4], "big")
    differing = {i for i, (a, b) in enumerate(zip(ours, raw, strict=True)) if a != b}
    assert differing <= reserved


def verification_context(request: AssociateRQ) -> PresentationContextRQ:
    contexts = [c for c in request.presentation_contexts if c.abstract_syntax == VERIFICATION]
    assert len(contexts) == 1
    return contexts[0]


def test_dcmtk_echoscu_associate_rq() -> None:
    echoscu = need_executable("echoscu")
    with listener() as server:
        port = server.getsockname()[1]
        arguments = [echoscu, "-aet", "ECHO-TEST-SCU", "-aec", "PEER-SCP"]
        arguments += ["-to", "5", "-ta", "5", "127.0.0.1", str(port)]
        request, raw = run_dcmtk(arguments, server)
    assert request.called_ae_title == "PEER-SCP"
    assert request.calling_ae_title == "ECHO-TEST-SCU"
    assert request.application_context_name == "1.2.840.10008.3.1.1.1"
    context = verification_context(request)
    assert context.context_id % 2 == 1  # PS3.8 9.3.2.2: odd IDs
    assert IMPLICIT_VR_LE in context.transfer_syntaxes
    maximum = request.find_user_item(MaximumLength)
    assert maximum is not None and maximum.maximum_length > 0
    uid = request.find_user_item(ImplementationClassUID)
    assert uid is not None and uid.uid.startswith("1.2.276.0.7230010")  # OFFIS root
    assert request.find_user_item(ImplementationVersionName) is not None
    # Nothing was lost in decoding: our encoding of it is DCMTK's, but for reserved bytes.
    assert_same_bytes_but_reserved(encode_pdu(request), raw)


def test_dcmtk_storescu_associate_rq() -> None:
    storescu = need_executable("storescu")
    pydicom = need_module("pydicom")
    path = next(p for p in pydicom_test_files() if p.name == "CT_small.dcm")
    sop_class = str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID)
    with listener() as server:
        port = server.getsockname()[1]
        arguments = [storescu, "-aet", "STORE-TEST-SCU", "-aec", "STORE-SCP"]
        arguments += ["-to", "5", "-ta", "5", "127.0.0.1", str(port), str(path)]
        request, raw = run_dcmtk(arguments, server)
    assert (request.called_ae_title, request.calling_ae_title) == ("STORE-SCP", "STORE-TEST-SCU")
    storage = [c for c in request.presentation_contexts if c.abstract_syntax == sop_class]
    assert storage and all(c.transfer_syntaxes for c in storage)
    assert len({c.context_id for c in request.presentation_contexts}) == len(
        request.presentation_contexts
    )
    assert request.find_user_item(MaximumLength) is not None
    assert request.find_user_item(ImplementationClassUID) is not None
    assert_same_bytes_but_reserved(encode_pdu(request), raw)


def test_pynetdicom_associate_rq_with_extended_negotiation() -> None:
    pynetdicom = need_module("pynetdicom")
    primitives = need_module("pynetdicom.pdu_primitives")

    identity = primitives.UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.positive_response_requested = True
    identity.primary_field = b"alice"
    identity.secondary_field = b"s3cret"
    role = primitives.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT_IMAGE_STORAGE
    role.scu_role = True
    role.scp_role = True
    window = primitives.AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 3
    window.maximum_number_operations_performed = 2
    extended = primitives.SOPClassExtendedNegotiation()
    extended.sop_class_uid = CT_IMAGE_STORAGE
    extended.service_class_application_information = b"\x02\x00"
    common = primitives.SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CT_IMAGE_STORAGE
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.1"]

    ae = pynetdicom.AE(ae_title="PYNETDICOM-SCU")
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.acse_timeout = 5
    ae.network_timeout = 5
    ae.connection_timeout = 5

    with listener() as server:
        port = server.getsockname()[1]

        def associate() -> None:
            association = ae.associate(
                "127.0.0.1",
                port,
                ae_title="PEER-SCP",
                max_pdu=32768,
                ext_neg=[identity, role, window, extended, common],
            )
            association.abort()

        request, raw = run_in_thread(associate, server)
    assert (request.called_ae_title, request.calling_ae_title) == ("PEER-SCP", "PYNETDICOM-SCU")
    assert IMPLICIT_VR_LE in verification_context(request).transfer_syntaxes
    assert request.find_user_item(MaximumLength) == MaximumLength(32768)
    uid = request.find_user_item(ImplementationClassUID)
    assert uid is not None and uid.uid == pynetdicom.PYNETDICOM_IMPLEMENTATION_UID
    assert request.find_user_item(UserIdentityRQ) == UserIdentityRQ(2, True, b"alice", b"s3cret")
    assert request.find_user_item(RoleSelection) == RoleSelection(CT_IMAGE_STORAGE, True, True)
    assert request.find_user_item(AsynchronousOperationsWindow) == AsynchronousOperationsWindow(
        3, 2
    )
    assert request.find_user_item(SOPClassExtendedNegotiation) == SOPClassExtendedNegotiation(
        CT_IMAGE_STORAGE, b"\x02\x00"
    )
    assert request.find_user_item(
        SOPClassCommonExtendedNegotiation
    ) == SOPClassCommonExtendedNegotiation(
        CT_IMAGE_STORAGE, "1.2.840.10008.4.2", ("1.2.840.10008.5.1.4.1.1.1",)
    )
    assert_same_bytes_but_reserved(encode_pdu(request), raw)


def test_pynetdicom_decodes_what_we_encode() -> None:
    pdu_module = need_module("pynetdicom.pdu")
    request = AssociateRQ(
        called_ae_title="PEER-SCP",
        calling_ae_title="AIODICOM",
        presentation_contexts=(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LE,)),
            PresentationContextRQ(3, CT_IMAGE_STORAGE, (IMPLICIT_VR_LE, "1.2.840.10008.1.2.1")),
        ),
        user_items=(
            MaximumLength(65536),
            ImplementationClassUID("1.2.826.0.1.3680043.9.7433.1"),
            ImplementationVersionName("AIODICOM_010"),
            RoleSelection(CT_IMAGE_STORAGE, True, False),
            UserIdentityRQ(1, False, b"bob"),
        ),
    )
    theirs = pdu_module.A_ASSOCIATE_RQ()
    theirs.decode(encode_pdu(request))
    assert theirs.called_ae_title == "PEER-SCP"
    assert theirs.calling_ae_title == "AIODICOM"
    assert theirs.application_context_name == "1.2.840.10008.3.1.1.1"
    contexts = {
        item.context_id: (str(item.abstract_syntax), [str(ts) for ts in item.transfer_syntax])
        for item in theirs.presentation_context
    }
    assert contexts == {
        1: (VERIFICATION, [IMPLICIT_VR_LE]),
        3: (CT_IMAGE_STORAGE, [IMPLICIT_VR_LE, "1.2.840.10008.1.2.1"]),
    }
    by_type = {type(item).__name__: item for item in theirs.user_information.user_data}
    assert by_type["MaximumLengthSubItem"].maximum_length_received == 65536
    assert by_type["ImplementationClassUIDSubItem"].implementation_class_uid == (
        "1.2.826.0.1.3680043.9.7433.1"
    )
    assert by_type["SCP_SCU_RoleSelectionSubItem"].scu_role == 1
    assert by_type["UserIdentitySubItemRQ"].primary_field == b"bob"

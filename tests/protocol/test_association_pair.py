"""Two sans-IO associations joined in memory (h11's ConnectionPair idea): no sockets, no sleeps."""

from __future__ import annotations

import random

import pytest

from aiodicom.protocol.association import Association
from aiodicom.protocol.codes import AbortReason, AbortSource, PDUType
from aiodicom.protocol.dimse import CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP, Status, encode_command
from aiodicom.protocol.dimse_stream import encode_message
from aiodicom.protocol.errors import LocalProtocolError
from aiodicom.protocol.events import (
    AbortAssociation,
    Aborted,
    AcceptAssociation,
    AcceptRelease,
    AssociationAccepted,
    AssociationRejected,
    AssociationReleased,
    AssociationRequested,
    ConnectionClosed,
    DataSetChunkReceived,
    DimseCommandReceived,
    Event,
    RejectAssociation,
    ReleaseRequested,
    RequestAssociation,
    RequestRelease,
    SendEvent,
    SendMessage,
)
from aiodicom.protocol.negotiation import (
    AcceptorPolicy,
    build_associate_rq,
    negotiate_as_acceptor,
)
from aiodicom.protocol.pdu import AssociateRJ
from aiodicom.protocol.pdu_codec import encode_pdu
from aiodicom.protocol.state import Role, State

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
VERIFICATION = "1.2.840.10008.1.1"


class Pair:
    """A requestor and an acceptor whose outputs are delivered to each other by hand."""

    def __init__(self, chunk_size: int | None = None, artim_timeout: float = 30.0) -> None:
        self.requestor = Association(Role.REQUESTOR, artim_timeout=artim_timeout)
        self.acceptor = Association(Role.ACCEPTOR, artim_timeout=artim_timeout)
        self.chunk_size = chunk_size
        self.now = 0.0

    def deliver(self, data: bytes, to: Association) -> None:
        if self.chunk_size is None:
            to.receive_data(data, self.now)
            return
        for start in range(0, len(data), self.chunk_size):
            to.receive_data(data[start : start + self.chunk_size], self.now)

    def exchange(self) -> None:
        """Deliver queued bytes both ways until neither side has anything to send."""
        for _ in range(1000):
            to_acceptor = self.requestor.data_to_send()
            to_requestor = self.acceptor.data_to_send()
            if not to_acceptor and not to_requestor:
                return
            if to_acceptor:
                self.deliver(to_acceptor, self.acceptor)
            if to_requestor:
                self.deliver(to_requestor, self.requestor)
        raise AssertionError("the pair never went quiet")

    def send(self, sender: Association, event: SendEvent) -> bytes:
        """Issue ``event`` on one side and deliver its bytes to the other."""
        data = sender.send(event, self.now)
        self.deliver(data, self.acceptor if sender is self.requestor else self.requestor)
        return data

    @staticmethod
    def events(association: Association) -> list[Event]:
        found = []
        while (event := association.next_event()) is not None:
            found.append(event)
        return found

    def associate(self, contexts: list[tuple[str, list[str]]], max_pdu_length: int) -> None:
        request = build_associate_rq(
            called_ae_title="STORE_SCP",
            calling_ae_title="STORE_SCU",
            contexts=contexts,
            max_pdu_length=max_pdu_length,
        )
        self.acceptor.connection_made(self.now)
        assert self.requestor.send(RequestAssociation(request), self.now) == b""
        assert self.requestor.state is State.STA4
        self.requestor.connection_made(self.now)  # transport connect confirmation
        self.exchange()
        [requested] = self.events(self.acceptor)
        assert isinstance(requested, AssociationRequested)
        answer = negotiate_as_acceptor(
            requested.request, AcceptorPolicy(ae_title="STORE_SCP", max_pdu_length=max_pdu_length)
        )
        assert not isinstance(answer, AssociateRJ)
        accept, _negotiated = answer
        self.send(self.acceptor, AcceptAssociation(accept))
        [accepted] = self.events(self.requestor)
        assert isinstance(accepted, AssociationAccepted)
        assert self.requestor.established and self.acceptor.established


def _dataset_bytes(size: int) -> bytes:
    rng = random.Random(size)
    return bytes(rng.getrandbits(8) for _ in range(size))


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 4096])
def test_negotiate_echo_store_release(chunk_size: int | None) -> None:
    pair = Pair(chunk_size=chunk_size)
    pair.associate(
        [(VERIFICATION, [EXPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])],
        max_pdu_length=4096,
    )

    # C-ECHO
    pair.send(pair.requestor, SendMessage(1, CEchoRQ(message_id=1)))
    [echo] = pair.events(pair.acceptor)
    assert isinstance(echo, DimseCommandReceived) and isinstance(echo.command, CEchoRQ)
    pair.send(pair.acceptor, SendMessage(1, CEchoRSP(1, Status.SUCCESS)))
    [echo_response] = pair.events(pair.requestor)
    assert isinstance(echo_response, DimseCommandReceived)
    assert echo_response.command == CEchoRSP(1, Status.SUCCESS)

    # C-STORE of a data set spread over many P-DATA-TF PDUs (max length 4096).
    dataset = _dataset_bytes(50_000 if chunk_size != 1 else 9_000)
    store = CStoreRQ(
        message_id=2,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid="1.2.3.4",
    )
    outgoing = pair.send(pair.requestor, SendMessage(3, store, dataset))
    assert outgoing.count(bytes([PDUType.P_DATA_TF, 0])) >= len(dataset) // 4096
    events = pair.events(pair.acceptor)
    command = events[0]
    assert isinstance(command, DimseCommandReceived) and command.command == store
    chunks = events[1:]
    assert all(isinstance(chunk, DataSetChunkReceived) for chunk in chunks)
    assert b"".join(bytes(c.data) for c in chunks if isinstance(c, DataSetChunkReceived)) == (
        dataset
    )
    assert [c.last for c in chunks if isinstance(c, DataSetChunkReceived)][-1] is True
    response = CStoreRSP(2, Status.SUCCESS, CT_IMAGE_STORAGE, "1.2.3.4")
    pair.send(pair.acceptor, SendMessage(3, response))
    [store_response] = pair.events(pair.requestor)
    assert isinstance(store_response, DimseCommandReceived)
    assert store_response.command == response

    # Release: RQ, RP, then the requestor closes and the acceptor sees the close.
    pair.send(pair.requestor, RequestRelease())
    [release] = pair.events(pair.acceptor)
    assert isinstance(release, ReleaseRequested)
    pair.send(pair.acceptor, AcceptRelease())
    assert pair.acceptor.state is State.STA13
    assert pair.acceptor.get_timer() is not None  # ARTIM waits for the close
    assert pair.events(pair.requestor) == [AssociationReleased(), ConnectionClosed()]
    assert pair.requestor.closed
    pair.acceptor.connection_lost()
    assert pair.events(pair.acceptor) == [ConnectionClosed()]
    assert pair.acceptor.closed and pair.acceptor.get_timer() is None


def test_reject_and_requestor_closes() -> None:
    pair = Pair()
    request = build_associate_rq(
        called_ae_title="X", calling_ae_title="Y", contexts=[(VERIFICATION, [EXPLICIT_VR_LE])]
    )
    pair.acceptor.connection_made(0.0)
    pair.requestor.send(RequestAssociation(request), 0.0)
    pair.requestor.connection_made(0.0)
    pair.exchange()
    [requested] = pair.events(pair.acceptor)
    assert isinstance(requested, AssociationRequested)
    reject = AssociateRJ(1, 1, 7)
    pair.send(pair.acceptor, RejectAssociation(reject))
    assert pair.events(pair.requestor) == [AssociationRejected(reject), ConnectionClosed()]
    assert pair.acceptor.state is State.STA13


def test_artim_expires_without_association_request() -> None:
    acceptor = Association(Role.ACCEPTOR, artim_timeout=5.0)
    acceptor.connection_made(100.0)
    assert acceptor.get_timer() == 105.0
    acceptor.handle_timer(104.9)
    assert not acceptor.closed
    acceptor.handle_timer(105.0)
    assert acceptor.closed
    assert acceptor.next_event() == ConnectionClosed()


def test_http_request_is_aborted_at_once() -> None:
    acceptor = Association(Role.ACCEPTOR)
    acceptor.connection_made(0.0)
    assert not acceptor.has_data_to_send
    acceptor.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    # PS3.8 Table 9-10: Evt19 in Sta2 is AA-1: A-ABORT, ARTIM, Sta13.
    assert acceptor.has_data_to_send
    assert acceptor.data_to_send() == bytes(
        [PDUType.ABORT, 0, 0, 0, 0, 4, 0, 0, AbortSource.SERVICE_PROVIDER, 1]
    )
    [aborted] = Pair.events(acceptor)
    assert isinstance(aborted, Aborted) and aborted.reason == AbortReason.UNRECOGNIZED_PDU
    assert acceptor.state is State.STA13
    # Whatever else arrives is dropped: no second A-ABORT.
    acceptor.receive_data(b"more garbage", 0.0)
    assert not acceptor.has_data_to_send
    assert acceptor.data_to_send() == b""


def test_user_abort_and_peer_sees_it() -> None:
    pair = Pair()
    pair.associate([(VERIFICATION, [EXPLICIT_VR_LE])], max_pdu_length=16384)
    pair.send(pair.requestor, AbortAssociation())
    events = pair.events(pair.acceptor)
    assert events == [Aborted(AbortSource.SERVICE_USER, 0), ConnectionClosed()]
    assert pair.requestor.state is State.STA13


def test_data_on_unaccepted_context_aborts() -> None:
    pair = Pair()
    pair.associate([(VERIFICATION, [EXPLICIT_VR_LE])], max_pdu_length=16384)
    # Hand-made P-DATA-TF on context 9, never proposed.
    pdv = bytes([0, 0, 0, 4, 9, 0x03, 0xAA, 0xBB])
    pair.acceptor.receive_data(bytes([4, 0, 0, 0, 0, len(pdv)]) + pdv, pair.now)
    [aborted] = Pair.events(pair.acceptor)
    assert isinstance(aborted, Aborted) and aborted.local
    assert pair.acceptor.state is State.STA13
    assert pair.acceptor.data_to_send()[:1] == bytes([PDUType.ABORT])


def test_pdata_longer_than_advertised_maximum_aborts() -> None:
    pair = Pair()
    pair.associate([(VERIFICATION, [EXPLICIT_VR_LE])], max_pdu_length=4096)
    # PS3.8 D.1: a P-DATA-TF longer than our Maximum Length is a protocol error.
    pair.acceptor.receive_data(bytes([4, 0]) + (4097).to_bytes(4, "big"), pair.now)
    [aborted] = Pair.events(pair.acceptor)
    assert isinstance(aborted, Aborted) and aborted.source == AbortSource.SERVICE_PROVIDER
    assert pair.acceptor.state is State.STA13


def test_local_primitive_in_wrong_state_is_refused() -> None:
    acceptor = Association(Role.ACCEPTOR)
    acceptor.connection_made(0.0)
    with pytest.raises(LocalProtocolError):
        acceptor.send(RequestRelease(), 0.0)


def test_transport_loss_mid_association_is_a_provider_abort() -> None:
    pair = Pair()
    pair.associate([(VERIFICATION, [EXPLICIT_VR_LE])], max_pdu_length=16384)
    pair.acceptor.connection_lost()
    events = pair.events(pair.acceptor)
    assert isinstance(events[0], Aborted) and events[0].source == AbortSource.SERVICE_PROVIDER
    assert events[-1] == ConnectionClosed()


def test_streamed_message_reassembles_without_copying_the_dataset() -> None:
    pair = Pair()
    pair.associate([(CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])], max_pdu_length=16384)
    dataset = _dataset_bytes(100_000)
    store = CStoreRQ(5, CT_IMAGE_STORAGE, "1.2.3.5")
    offset = 0
    wire = bytearray()
    for header, data_length in pair.requestor.stream_message(1, store, len(dataset), pair.now):
        wire += header
        wire += dataset[offset : offset + data_length]
        offset += data_length
    assert offset == len(dataset)
    pair.deliver(bytes(wire), pair.acceptor)
    events = pair.events(pair.acceptor)
    assert isinstance(events[0], DimseCommandReceived) and events[0].command == store
    received = b"".join(bytes(e.data) for e in events[1:] if isinstance(e, DataSetChunkReceived))
    assert received == dataset


def test_streamed_message_checks_state_and_context_eagerly() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError):
        pair.requestor.stream_message(1, CEchoRQ(1), None, 0.0)
    pair.associate([(VERIFICATION, [EXPLICIT_VR_LE])], max_pdu_length=16384)
    with pytest.raises(LocalProtocolError):
        pair.requestor.stream_message(7, CEchoRQ(1), None, 0.0)


def test_pdata_right_behind_the_request_waits_for_our_answer() -> None:
    # A requestor that sends its first P-DATA-TF without waiting for the
    # A-ASSOCIATE-AC: the acceptor holds those bytes until it has answered.
    requestor = Association(Role.REQUESTOR)
    acceptor = Association(Role.ACCEPTOR)
    request = build_associate_rq(
        called_ae_title="X",
        calling_ae_title="Y",
        contexts=[(VERIFICATION, [EXPLICIT_VR_LE])],
        max_pdu_length=16384,
    )
    requestor.send(RequestAssociation(request), 0.0)
    requestor.connection_made(0.0)
    eager = encode_message(1, encode_command(CEchoRQ(7)), None, 16384)
    acceptor.connection_made(0.0)
    acceptor.receive_data(requestor.data_to_send() + eager, 0.0)
    [requested] = Pair.events(acceptor)
    assert isinstance(requested, AssociationRequested)
    assert acceptor.state is State.STA3 and acceptor.data_to_send() == b""
    answer = negotiate_as_acceptor(requested.request, AcceptorPolicy(ae_title="X"))
    assert not isinstance(answer, AssociateRJ)
    acceptor.send(AcceptAssociation(answer[0]), 0.0)
    [echo] = Pair.events(acceptor)
    assert isinstance(echo, DimseCommandReceived) and echo.command == CEchoRQ(7)
    assert acceptor.can_send_data


def test_protocol_version_rejection_is_queued_at_once() -> None:
    request = build_associate_rq(
        called_ae_title="X", calling_ae_title="Y", contexts=[(VERIFICATION, [EXPLICIT_VR_LE])]
    )
    data = bytearray(encode_pdu(request))
    data[7] = 0  # PS3.8 9.3.2: protocol version, bit 0 cleared
    acceptor = Association(Role.ACCEPTOR)
    acceptor.connection_made(0.0)
    acceptor.receive_data(bytes(data), 0.0)
    # No event for the user, but the provider's A-ASSOCIATE-RJ 1/2/2 is ready to go.
    assert acceptor.next_event() is None
    assert acceptor.data_to_send() == bytes([3, 0, 0, 0, 0, 4, 0, 1, 2, 2])
    assert acceptor.state is State.STA13 and not acceptor.can_send_data

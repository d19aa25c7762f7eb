"""Association negotiation: the acceptor policy, the requestor helpers, and the UID sets."""

from __future__ import annotations

from collections.abc import Sequence

import pydicom.uid
import pytest

from aiodicom.protocol.codes import (
    DICOM_APPLICATION_CONTEXT,
    AbortReason,
    ContextResult,
    UserIdentityType,
)
from aiodicom.protocol.errors import LocalProtocolError, RemoteProtocolError
from aiodicom.protocol.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    AcceptorPolicy,
    NegotiatedAssociation,
    association_limit_reject,
    build_associate_rq,
    interpret_associate_ac,
    negotiate_as_acceptor,
)
from aiodicom.protocol.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownUserItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserItem,
)
from aiodicom.protocol.pdu_codec import decode_pdu, encode_pdu
from aiodicom.protocol.uids import (
    ALL_TRANSFER_SYNTAXES,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE_8BIT,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
    STORAGE_SOP_CLASSES,
    VERIFICATION_SOP_CLASS,
)
from support import need_module

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ECG_12_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PRIVATE_SYNTAX = "1.2.826.0.1.3680043.9.9999.1"


def make_rq(
    contexts: Sequence[tuple[int, str, Sequence[str]]] = ((1, CT, (EXPLICIT_VR_LITTLE_ENDIAN,)),),
    *,
    user_items: Sequence[UserItem] = (MaximumLength(16384), ImplementationClassUID("1.2.3")),
    called: str = "STORESCP",
    calling: str = "STORESCU",
    application_context: str = DICOM_APPLICATION_CONTEXT,
    protocol_version: int = 1,
) -> AssociateRQ:
    return AssociateRQ(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(
            PresentationContextRQ(context_id, abstract, tuple(syntaxes))
            for context_id, abstract, syntaxes in contexts
        ),
        user_items=tuple(user_items),
        application_context_name=application_context,
        protocol_version=protocol_version,
    )


def accept(
    request: AssociateRQ, policy: AcceptorPolicy | None = None
) -> tuple[AssociateAC, NegotiatedAssociation]:
    answer = negotiate_as_acceptor(request, policy or AcceptorPolicy(ae_title="STORESCP"))
    assert not isinstance(answer, AssociateRJ), answer
    return answer


def reject(request: AssociateRQ, policy: AcceptorPolicy | None = None) -> tuple[int, int, int]:
    answer = negotiate_as_acceptor(request, policy or AcceptorPolicy(ae_title="STORESCP"))
    assert isinstance(answer, AssociateRJ), answer
    return answer.result, answer.source, answer.reason


# --- uids.py -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sop_class",
    [CT, MR, SC, ENHANCED_CT, RT_PLAN, BASIC_TEXT_SR, ECG_12_LEAD, ENCAPSULATED_PDF],
)
def test_known_storage_sop_classes_are_in(sop_class: str) -> None:
    assert sop_class in STORAGE_SOP_CLASSES


@pytest.mark.parametrize(
    "not_storage",
    [STORAGE_COMMITMENT_PUSH, MEDIA_STORAGE_DIRECTORY, VERIFICATION_SOP_CLASS, PATIENT_ROOT_FIND],
)
def test_non_c_store_sop_classes_are_out(not_storage: str) -> None:
    assert not_storage not in STORAGE_SOP_CLASSES


def test_retired_storage_classes_are_kept() -> None:
    assert "1.2.840.10008.5.1.4.1.1.8" in STORAGE_SOP_CLASSES  # Standalone Overlay (retired)
    assert "1.2.840.10008.5.1.4.1.1.88.1" in STORAGE_SOP_CLASSES  # Text SR - Trial (retired)


def test_transfer_syntaxes_cover_pydicom_in_preference_order() -> None:
    assert ALL_TRANSFER_SYNTAXES[:2] == (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
    assert len(set(ALL_TRANSFER_SYNTAXES)) == len(ALL_TRANSFER_SYNTAXES)
    assert set(pydicom.uid.AllTransferSyntaxes) <= set(ALL_TRANSFER_SYNTAXES)
    for excluded in ("1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2", "1.2.840.10008.1.20"):
        assert excluded not in ALL_TRANSFER_SYNTAXES


def test_implementation_identity_is_valid() -> None:
    assert pydicom.uid.UID(IMPLEMENTATION_CLASS_UID).is_valid
    assert IMPLEMENTATION_CLASS_UID.startswith("2.25.")
    assert 1 <= len(IMPLEMENTATION_VERSION_NAME) <= 16


# --- Acceptor: presentation contexts -------------------------------------------------------------

EVERY_KIND_OF_SYNTAX = [
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    JPEG_BASELINE_8BIT,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
    JPEG_2000,
    RLE_LOSSLESS,
]


@pytest.mark.parametrize("transfer_syntax", EVERY_KIND_OF_SYNTAX)
@pytest.mark.parametrize("sop_class", [CT, MR, SC])
def test_defaults_accept_storage_in_any_transfer_syntax(
    sop_class: str, transfer_syntax: str
) -> None:
    ac, negotiated = accept(make_rq([(1, sop_class, [transfer_syntax])]))
    assert ac.presentation_contexts == (
        PresentationContextAC(1, ContextResult.ACCEPTANCE, transfer_syntax),
    )
    context = negotiated.contexts[1]
    assert (context.abstract_syntax, context.transfer_syntax) == (sop_class, transfer_syntax)
    assert (context.scu_role, context.scp_role) == (True, False)
    assert context.acceptor_is_scp and not context.acceptor_is_scu


def test_defaults_accept_verification() -> None:
    _, negotiated = accept(make_rq([(1, VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN])]))
    assert negotiated.contexts[1].transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN


def test_unsupported_abstract_and_transfer_syntaxes_are_rejected_per_context() -> None:
    ac, negotiated = accept(
        make_rq(
            [
                (1, PATIENT_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN]),
                (3, CT, [PRIVATE_SYNTAX]),
                (5, CT, [PRIVATE_SYNTAX, JPEG_2000]),
            ]
        )
    )
    assert [(c.context_id, c.result) for c in ac.presentation_contexts] == [
        (1, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        (3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),
        (5, ContextResult.ACCEPTANCE),
    ]
    assert list(negotiated.contexts) == [5]
    assert negotiated.contexts[5].transfer_syntax == JPEG_2000
    assert dict(negotiated.rejected_contexts) == {
        1: ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED,
        3: ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
    }


def test_rejected_context_echoes_first_proposed_transfer_syntax() -> None:
    ac, _ = accept(make_rq([(1, PATIENT_ROOT_FIND, [IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000])]))
    assert ac.presentation_contexts[0].transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN


def test_any_abstract_syntax_mode() -> None:
    policy = AcceptorPolicy(ae_title="ANY", abstract_syntaxes=None)
    _, negotiated = accept(make_rq([(1, PATIENT_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN])]), policy)
    assert negotiated.contexts[1].abstract_syntax == PATIENT_ROOT_FIND


def test_restricted_abstract_syntaxes() -> None:
    policy = AcceptorPolicy(ae_title="CTONLY", abstract_syntaxes=frozenset({CT}))
    ac, _ = accept(
        make_rq([(1, CT, [EXPLICIT_VR_LITTLE_ENDIAN]), (3, MR, [EXPLICIT_VR_LITTLE_ENDIAN])]),
        policy,
    )
    assert [c.result for c in ac.presentation_contexts] == [
        ContextResult.ACCEPTANCE,
        ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ]


def test_transfer_syntax_follows_requestor_order_by_default() -> None:
    request = make_rq([(1, CT, [JPEG_2000, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])])
    _, negotiated = accept(request)
    assert negotiated.contexts[1].transfer_syntax == JPEG_2000


def test_transfer_syntax_can_follow_our_order() -> None:
    request = make_rq([(1, CT, [JPEG_2000, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])])
    policy = AcceptorPolicy(ae_title="STORESCP", prefer_requestor_order=False)
    _, negotiated = accept(request, policy)
    assert negotiated.contexts[1].transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN
    narrow = AcceptorPolicy(
        ae_title="STORESCP",
        prefer_requestor_order=False,
        transfer_syntaxes=(IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000),
    )
    _, negotiated = accept(request, narrow)
    assert negotiated.contexts[1].transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN


def test_results_keep_the_request_order_one_per_context() -> None:
    request = make_rq(
        [
            (7, MR, [EXPLICIT_VR_LITTLE_ENDIAN]),
            (1, PATIENT_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN]),
            (255, CT, [PRIVATE_SYNTAX]),
            (3, SC, [RLE_LOSSLESS]),
        ]
    )
    ac, negotiated = accept(request)
    assert [c.context_id for c in ac.presentation_contexts] == [7, 1, 255, 3]
    assert set(negotiated.contexts) == {7, 3}


def test_no_acceptable_context_is_still_an_accept() -> None:
    ac, negotiated = accept(make_rq([(1, PATIENT_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN])]))
    assert ac.presentation_contexts[0].result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert not negotiated.contexts


def test_find_context() -> None:
    _, negotiated = accept(
        make_rq(
            [(3, CT, [JPEG_2000]), (1, CT, [EXPLICIT_VR_LITTLE_ENDIAN]), (5, MR, [RLE_LOSSLESS])]
        )
    )
    found = negotiated.find_context(CT)
    assert found is not None and found.context_id == 1
    found = negotiated.find_context(CT, JPEG_2000)
    assert found is not None and found.context_id == 3
    assert negotiated.find_context(MR, JPEG_2000) is None
    assert negotiated.find_context(SC) is None


# --- Acceptor: A-ASSOCIATE-RJ answers -----------------------------------------------------------


@pytest.mark.parametrize("name", ["1.2.3.4", ""])
def test_foreign_application_context_is_rejected(name: str) -> None:
    assert reject(make_rq(application_context=name)) == (1, 1, 2)


def test_protocol_version_without_bit_0_is_rejected() -> None:
    assert reject(make_rq(protocol_version=2)) == (1, 2, 2)
    accept(make_rq(protocol_version=3))  # bit 0 set: other bits are not ours to judge


def test_called_ae_title_checked_only_when_required() -> None:
    strict = AcceptorPolicy(ae_title="STORESCP", require_called_ae_title=True)
    assert reject(make_rq(called="OTHER"), strict) == (1, 1, 7)
    assert reject(make_rq(called="storescp"), strict) == (1, 1, 7)  # case-sensitive
    accept(make_rq(called="  STORESCP "), strict)
    accept(make_rq(called="OTHER"))  # not required by default


def test_calling_ae_title_allow_list() -> None:
    policy = AcceptorPolicy(
        ae_title="STORESCP", allowed_calling_ae_titles=frozenset({"CT01 ", "MR01"})
    )
    assert reject(make_rq(calling="INTRUDER"), policy) == (1, 1, 3)
    assert reject(make_rq(calling="ct01"), policy) == (1, 1, 3)
    _, negotiated = accept(make_rq(calling=" CT01"), policy)
    assert negotiated.calling_ae_title == "CT01"
    accept(make_rq(calling="MR01"), policy)
    accept(make_rq(calling="ANYONE"))  # None: anyone


def test_rejection_order_application_context_before_ae_titles() -> None:
    policy = AcceptorPolicy(
        ae_title="STORESCP", require_called_ae_title=True, allowed_calling_ae_titles=frozenset()
    )
    assert reject(make_rq(application_context="1.2.3", called="X"), policy) == (1, 1, 2)
    assert reject(make_rq(called="X"), policy) == (1, 1, 7)
    assert reject(make_rq(), policy) == (1, 1, 3)


@pytest.mark.parametrize(
    "context_ids",
    [[2], [0], [257], [1, 3, 1], []],
    ids=["even", "zero", "above-255", "duplicate", "none"],
)
def test_invalid_context_ids_reject_the_association(context_ids: list[int]) -> None:
    request = make_rq([(context_id, CT, [EXPLICIT_VR_LITTLE_ENDIAN]) for context_id in context_ids])
    assert reject(request) == (1, 2, 1)


def test_association_limit_reject() -> None:
    answer = association_limit_reject()
    assert (answer.result, answer.source, answer.reason) == (2, 3, 2)


# --- Acceptor: user information ----------------------------------------------------------------


def test_maximum_length_both_ways() -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", max_pdu_length=65536)
    ac, negotiated = accept(make_rq(user_items=[MaximumLength(32768)]), policy)
    assert ac.find_user_item(MaximumLength) == MaximumLength(65536)
    assert (negotiated.peer_max_pdu_length, negotiated.our_max_pdu_length) == (32768, 65536)
    _, negotiated = accept(make_rq(user_items=[]))
    assert negotiated.peer_max_pdu_length == 0  # absent: unlimited (PS3.8 D.1)
    assert negotiated.our_max_pdu_length == DEFAULT_MAX_PDU_LENGTH
    _, negotiated = accept(make_rq(user_items=[MaximumLength(0)]))
    assert negotiated.peer_max_pdu_length == 0


def test_maximum_length_too_small_to_carry_data_is_rejected() -> None:
    assert reject(make_rq(user_items=[MaximumLength(6)])) == (1, 1, 1)
    accept(make_rq(user_items=[MaximumLength(7)]))


def test_accept_carries_implementation_identity_and_echoes_ae_titles() -> None:
    policy = AcceptorPolicy(
        ae_title="STORESCP",
        implementation_class_uid="1.2.3.4.5",
        implementation_version_name="TEST_1",
    )
    request = make_rq(
        called="STORESCP",
        calling="SCU",
        user_items=[
            MaximumLength(16384),
            ImplementationClassUID("9.8.7"),
            ImplementationVersionName("PEER"),
        ],
    )
    ac, negotiated = accept(request, policy)
    assert (ac.called_ae_title, ac.calling_ae_title) == ("STORESCP", "SCU")
    assert ac.find_user_item(ImplementationClassUID) == ImplementationClassUID("1.2.3.4.5")
    assert ac.find_user_item(ImplementationVersionName) == ImplementationVersionName("TEST_1")
    assert isinstance(ac.user_items[0], MaximumLength)
    assert negotiated.peer_implementation_class_uid == "9.8.7"
    assert negotiated.peer_implementation_version_name == "PEER"
    _, negotiated = accept(make_rq(user_items=[]))
    assert negotiated.peer_implementation_class_uid is None
    assert negotiated.peer_implementation_version_name is None


def test_async_window_not_answered_unless_proposed() -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", max_operations_performed=8)
    ac, negotiated = accept(make_rq(), policy)
    assert ac.find_user_item(AsynchronousOperationsWindow) is None
    assert (negotiated.max_operations_invoked, negotiated.max_operations_performed) == (1, 1)


@pytest.mark.parametrize(
    ("proposed", "ours", "answered"),
    [
        ((5, 3), (2, 1), (2, 1)),  # lowered to what we perform / invoke
        ((3, 2), (10, 10), (3, 2)),  # never above the proposal
        ((0, 0), (4, 1), (4, 1)),  # unlimited proposed: negotiated down
        ((0, 0), (0, 0), (0, 0)),  # unlimited both ways
        ((6, 0), (0, 2), (6, 2)),  # 0 is the largest value, not the smallest
    ],
)
def test_async_window_answer_is_the_minimum(
    proposed: tuple[int, int], ours: tuple[int, int], answered: tuple[int, int]
) -> None:
    policy = AcceptorPolicy(
        ae_title="STORESCP", max_operations_performed=ours[0], max_operations_invoked=ours[1]
    )
    ac, negotiated = accept(make_rq(user_items=[AsynchronousOperationsWindow(*proposed)]), policy)
    assert ac.find_user_item(AsynchronousOperationsWindow) == AsynchronousOperationsWindow(
        *answered
    )
    assert (negotiated.max_operations_invoked, negotiated.max_operations_performed) == answered


def test_no_role_items_without_role_proposals() -> None:
    ac, _ = accept(make_rq())
    assert ac.find_user_items(RoleSelection) == ()


def test_requestor_scu_role_accepted_scp_role_declined() -> None:
    request = make_rq(
        [(1, CT, [EXPLICIT_VR_LITTLE_ENDIAN]), (3, MR, [EXPLICIT_VR_LITTLE_ENDIAN])],
        user_items=[RoleSelection(CT, True, True), RoleSelection(MR, False, True)],
    )
    ac, negotiated = accept(request)
    assert ac.find_user_items(RoleSelection) == (
        RoleSelection(CT, True, False),
        RoleSelection(MR, False, False),
    )
    assert (negotiated.contexts[1].scu_role, negotiated.contexts[1].scp_role) == (True, False)
    # MR: the only proposed role was declined, so the context is of no use to anyone.
    assert ac.presentation_contexts[1].result == ContextResult.USER_REJECTION
    assert negotiated.rejected_contexts == {3: ContextResult.USER_REJECTION}


def test_requestor_scp_role_accepted_when_policy_allows() -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", accept_scp_role_for=frozenset({CT}))
    request = make_rq(user_items=[RoleSelection(CT, False, True)])
    ac, negotiated = accept(request, policy)
    assert ac.find_user_items(RoleSelection) == (RoleSelection(CT, False, True),)
    context = negotiated.contexts[1]
    assert (context.scu_role, context.scp_role) == (False, True)
    assert context.acceptor_is_scu and not context.acceptor_is_scp


def test_role_never_granted_when_not_proposed() -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", accept_scp_role_for=frozenset({CT}))
    ac, _ = accept(make_rq(user_items=[RoleSelection(CT, True, False)]), policy)
    assert ac.find_user_items(RoleSelection) == (RoleSelection(CT, True, False),)


def test_every_offered_role_item_answered_once() -> None:
    request = make_rq(
        user_items=[
            RoleSelection(MR, True, False),
            RoleSelection(MR, False, True),
            RoleSelection(CT, True, True),
        ]
    )
    ac, _ = accept(request)
    assert ac.find_user_items(RoleSelection) == (
        RoleSelection(MR, True, False),  # MR was not proposed as a context: still answered
        RoleSelection(CT, True, False),
    )


def test_extended_negotiation_and_unknown_items_get_no_answer() -> None:
    request = make_rq(
        user_items=[
            MaximumLength(16384),
            SOPClassExtendedNegotiation(CT, b"\x01\x00"),
            SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2"),
            UnknownUserItem(0x7F, b"opaque"),
        ]
    )
    ac, negotiated = accept(request)
    assert {type(item) for item in ac.user_items} == {
        MaximumLength,
        ImplementationClassUID,
        ImplementationVersionName,
    }
    assert 1 in negotiated.contexts


# --- Acceptor: user identity --------------------------------------------------------------------


def identity(
    kind: int = UserIdentityType.USERNAME_AND_PASSCODE, *, positive: bool = True
) -> UserIdentityRQ:
    return UserIdentityRQ(kind, positive, b"alice", b"secret")


def test_identity_without_verifier_is_recorded_not_answered() -> None:
    ac, negotiated = accept(make_rq(user_items=[identity()]))
    assert ac.find_user_item(UserIdentityAC) is None
    assert negotiated.user_identity == identity()
    assert negotiated.user_identity_response is None


@pytest.mark.parametrize("verdict", [False, None])
def test_identity_refused_by_verifier_is_rejected(verdict: bool | None) -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", user_identity_verifier=lambda _i, _c: verdict)
    assert reject(make_rq(user_items=[identity()]), policy) == (1, 2, 1)


def test_verifier_sees_identity_and_calling_ae() -> None:
    seen: list[tuple[UserIdentityRQ, str]] = []

    def verifier(item: UserIdentityRQ, calling: str) -> bool:
        seen.append((item, calling))
        return item.primary_field == b"alice" and item.secondary_field == b"secret"

    policy = AcceptorPolicy(ae_title="STORESCP", user_identity_verifier=verifier)
    ac, _ = accept(make_rq(calling="CT01 ", user_items=[identity()]), policy)
    assert seen == [(identity(), "CT01")]
    assert ac.find_user_item(UserIdentityAC) == UserIdentityAC(b"")
    wrong = UserIdentityRQ(UserIdentityType.USERNAME_AND_PASSCODE, True, b"alice", b"guess")
    assert reject(make_rq(user_items=[wrong]), policy) == (1, 2, 1)


def test_identity_response_only_when_requested() -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", user_identity_verifier=lambda _i, _c: True)
    ac, negotiated = accept(make_rq(user_items=[identity(positive=False)]), policy)
    assert ac.find_user_item(UserIdentityAC) is None
    assert negotiated.user_identity_response is None


def test_identity_server_response_bytes() -> None:
    policy = AcceptorPolicy(ae_title="STORESCP", user_identity_verifier=lambda _i, _c: b"ticket")
    kerberos = UserIdentityRQ(UserIdentityType.KERBEROS, True, b"service-ticket")
    ac, negotiated = accept(make_rq(user_items=[kerberos]), policy)
    assert ac.find_user_item(UserIdentityAC) == UserIdentityAC(b"ticket")
    assert negotiated.user_identity_response == b"ticket"
    # PS3.7 Table D.3-15: for username types the response is empty whatever the verifier says.
    ac, _ = accept(make_rq(user_items=[identity(UserIdentityType.USERNAME)]), policy)
    assert ac.find_user_item(UserIdentityAC) == UserIdentityAC(b"")


def test_required_identity_missing_is_rejected() -> None:
    calls: list[str] = []

    def verifier(_item: UserIdentityRQ, calling: str) -> bool:
        calls.append(calling)
        return True

    policy = AcceptorPolicy(
        ae_title="STORESCP", require_user_identity=True, user_identity_verifier=verifier
    )
    assert reject(make_rq(), policy) == (1, 2, 1)
    assert calls == []
    accept(make_rq(user_items=[identity()]), policy)
    assert calls == ["STORESCU"]


# --- Policy validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ae_title": ""},
        {"ae_title": "   "},
        {"ae_title": "A" * 17},
        {"ae_title": "BACK\\SLASH"},
        {"ae_title": "OK", "max_pdu_length": 0},
        {"ae_title": "OK", "max_pdu_length": 2**32},
        {"ae_title": "OK", "max_operations_performed": -1},
        {"ae_title": "OK", "max_operations_invoked": 65536},
        {"ae_title": "OK", "transfer_syntaxes": ()},
        {"ae_title": "OK", "implementation_version_name": "X" * 17},
        {"ae_title": "OK", "implementation_class_uid": ""},
    ],
)
def test_policy_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AcceptorPolicy(**kwargs)  # type: ignore[arg-type]


# --- Requestor ------------------------------------------------------------------------------------


def test_build_assigns_odd_context_ids_and_user_items() -> None:
    request = build_associate_rq(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        contexts=[
            (CT, [JPEG_2000, EXPLICIT_VR_LITTLE_ENDIAN]),
            (MR, [IMPLICIT_VR_LITTLE_ENDIAN]),
            (SC, [RLE_LOSSLESS]),
        ],
        max_pdu_length=65536,
    )
    assert [(c.context_id, c.abstract_syntax) for c in request.presentation_contexts] == [
        (1, CT),
        (3, MR),
        (5, SC),
    ]
    assert request.presentation_contexts[0].transfer_syntaxes == (
        JPEG_2000,
        EXPLICIT_VR_LITTLE_ENDIAN,
    )
    assert request.find_user_item(MaximumLength) == MaximumLength(65536)
    assert request.find_user_item(ImplementationClassUID) == ImplementationClassUID(
        IMPLEMENTATION_CLASS_UID
    )
    assert request.find_user_item(ImplementationVersionName) == ImplementationVersionName(
        IMPLEMENTATION_VERSION_NAME
    )
    assert request.find_user_item(AsynchronousOperationsWindow) is None  # 1/1 is the default
    assert request.application_context_name == DICOM_APPLICATION_CONTEXT


def test_build_optional_items() -> None:
    who = identity()
    request = build_associate_rq(
        called_ae_title="A",
        calling_ae_title="B",
        contexts=[(CT, [EXPLICIT_VR_LITTLE_ENDIAN])],
        max_pdu_length=16384,
        max_operations_invoked=4,
        user_identity=who,
        role_selections=[RoleSelection(CT, True, True)],
    )
    assert request.find_user_item(AsynchronousOperationsWindow) == AsynchronousOperationsWindow(
        4, 1
    )
    assert request.find_user_items(RoleSelection) == (RoleSelection(CT, True, True),)
    assert request.find_user_item(UserIdentityRQ) == who


def test_build_limits() -> None:
    syntax = [EXPLICIT_VR_LITTLE_ENDIAN]
    full = build_associate_rq(
        called_ae_title="A",
        calling_ae_title="B",
        contexts=[(CT, syntax)] * 128,
        max_pdu_length=16384,
    )
    assert full.presentation_contexts[-1].context_id == 255
    bad_calls: list[dict[str, object]] = [
        {"contexts": [(CT, syntax)] * 129},
        {"contexts": []},
        {"contexts": [(CT, [])]},
        {"contexts": [(CT, syntax)], "called_ae_title": ""},
        {"contexts": [(CT, syntax)], "calling_ae_title": "X" * 17},
        {"contexts": [(CT, syntax)], "max_pdu_length": 0},
        {"contexts": [(CT, syntax)], "max_operations_invoked": 70000},
    ]
    for overrides in bad_calls:
        kwargs: dict[str, object] = {
            "called_ae_title": "A",
            "calling_ae_title": "B",
            "max_pdu_length": 16384,
            **overrides,
        }
        with pytest.raises(LocalProtocolError):
            build_associate_rq(**kwargs)  # type: ignore[arg-type]


def two_context_rq(*user_items: UserItem) -> AssociateRQ:
    return make_rq(
        [(1, CT, [JPEG_2000, EXPLICIT_VR_LITTLE_ENDIAN]), (3, MR, [EXPLICIT_VR_LITTLE_ENDIAN])],
        user_items=[MaximumLength(16384), *user_items],
    )


def make_ac(contexts: Sequence[PresentationContextAC], *user_items: UserItem) -> AssociateAC:
    return AssociateAC("STORESCP", "STORESCU", tuple(contexts), tuple(user_items))


def test_interpret_matches_results_by_id() -> None:
    ac = make_ac(
        [
            PresentationContextAC(3, 0, EXPLICIT_VR_LITTLE_ENDIAN),
            PresentationContextAC(1, 0, JPEG_2000),
        ],
        MaximumLength(65536),
        ImplementationClassUID("1.2.3"),
        ImplementationVersionName("PEER"),
    )
    negotiated = interpret_associate_ac(two_context_rq(), ac)
    assert negotiated.contexts[1].abstract_syntax == CT
    assert negotiated.contexts[1].transfer_syntax == JPEG_2000
    assert negotiated.contexts[3].abstract_syntax == MR
    assert (negotiated.peer_max_pdu_length, negotiated.our_max_pdu_length) == (65536, 16384)
    assert negotiated.peer_implementation_class_uid == "1.2.3"
    assert negotiated.peer_implementation_version_name == "PEER"


def test_interpret_missing_and_rejected_contexts() -> None:
    ac = make_ac([PresentationContextAC(1, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "")])
    negotiated = interpret_associate_ac(two_context_rq(), ac)
    assert not negotiated.contexts
    assert negotiated.rejected_contexts == {
        1: ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
        3: ContextResult.NO_REASON,
    }
    assert negotiated.peer_max_pdu_length == 0


@pytest.mark.parametrize(
    "contexts",
    [
        [PresentationContextAC(1, 0, IMPLICIT_VR_LITTLE_ENDIAN)],  # not proposed for context 1
        [PresentationContextAC(3, 0, JPEG_2000)],  # proposed, but for context 1 only
        [PresentationContextAC(5, 0, EXPLICIT_VR_LITTLE_ENDIAN)],  # unknown ID
        [PresentationContextAC(1, 0, JPEG_2000), PresentationContextAC(1, 4, "")],  # twice
        [PresentationContextAC(1, 9, JPEG_2000)],  # undefined result
    ],
    ids=["syntax-not-proposed", "syntax-of-other-context", "unknown-id", "twice", "bad-result"],
)
def test_interpret_protocol_violations(contexts: list[PresentationContextAC]) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        interpret_associate_ac(two_context_rq(), make_ac(contexts))
    assert caught.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_interpret_rejected_context_transfer_syntax_is_not_tested() -> None:
    ac = make_ac([PresentationContextAC(1, ContextResult.USER_REJECTION, "9.9.9")])
    assert interpret_associate_ac(two_context_rq(), ac).rejected_contexts[1] == 1


@pytest.mark.parametrize(
    ("proposed", "answered", "agreed"),
    [
        (None, None, (True, False)),
        (None, (True, True), (True, False)),  # an answer to nothing is ignored
        ((True, True), None, (True, False)),  # no answer: defaults
        ((True, True), (True, False), (True, False)),
        ((True, True), (False, True), (False, True)),
        ((True, False), (True, True), (True, False)),  # a role not proposed is not granted
    ],
)
def test_interpret_roles(
    proposed: tuple[bool, bool] | None,
    answered: tuple[bool, bool] | None,
    agreed: tuple[bool, bool],
) -> None:
    request = two_context_rq(*([RoleSelection(CT, *proposed)] if proposed else []))
    ac = make_ac(
        [PresentationContextAC(1, 0, JPEG_2000)],
        *([RoleSelection(CT, *answered)] if answered else []),
    )
    context = interpret_associate_ac(request, ac).contexts[1]
    assert (context.scu_role, context.scp_role) == agreed


def test_interpret_all_roles_declined_counts_as_rejected() -> None:
    request = two_context_rq(RoleSelection(CT, False, True))
    ac = make_ac([PresentationContextAC(1, 0, JPEG_2000)], RoleSelection(CT, False, False))
    negotiated = interpret_associate_ac(request, ac)
    assert 1 not in negotiated.contexts
    assert negotiated.rejected_contexts[1] == ContextResult.USER_REJECTION


@pytest.mark.parametrize(
    ("proposed", "answered", "agreed"),
    [
        (None, (5, 5), (1, 1)),  # answered without a proposal: ignored
        ((4, 2), None, (1, 1)),  # not answered: synchronous
        ((4, 2), (2, 1), (2, 1)),
        ((2, 2), (5, 0), (2, 2)),  # never above the proposal
    ],
)
def test_interpret_async_window(
    proposed: tuple[int, int] | None, answered: tuple[int, int] | None, agreed: tuple[int, int]
) -> None:
    request = two_context_rq(*([AsynchronousOperationsWindow(*proposed)] if proposed else []))
    ac = make_ac(
        [PresentationContextAC(1, 0, JPEG_2000)],
        *([AsynchronousOperationsWindow(*answered)] if answered else []),
    )
    negotiated = interpret_associate_ac(request, ac)
    assert (negotiated.max_operations_invoked, negotiated.max_operations_performed) == agreed


def test_interpret_identity_response() -> None:
    who = identity(UserIdentityType.SAML)
    negotiated = interpret_associate_ac(
        two_context_rq(who),
        make_ac([PresentationContextAC(1, 0, JPEG_2000)], UserIdentityAC(b"ok")),
    )
    assert negotiated.user_identity == who
    assert negotiated.user_identity_response == b"ok"
    stray = interpret_associate_ac(
        two_context_rq(), make_ac([PresentationContextAC(1, 0, JPEG_2000)], UserIdentityAC(b"ok"))
    )
    assert stray.user_identity_response is None


# --- Round trip: requestor helper -> acceptor -> requestor interpretation -------------------------


def verifier_accepting_alice(item: UserIdentityRQ, _calling: str) -> bytes | bool:
    return b"server-ticket" if item.primary_field == b"alice" else False


ROUND_TRIPS: list[tuple[str, AcceptorPolicy, dict[str, object]]] = [
    ("plain", AcceptorPolicy(ae_title="STORESCP"), {}),
    (
        "mixed",
        AcceptorPolicy(ae_title="STORESCP", max_pdu_length=65536, max_operations_performed=3),
        {
            "max_operations_invoked": 8,
            "max_operations_performed": 2,
            "role_selections": [RoleSelection(CT, True, True), RoleSelection(MR, False, True)],
        },
    ),
    (
        "scp-role-and-identity",
        AcceptorPolicy(
            ae_title="STORESCP",
            accept_scp_role_for=frozenset({MR}),
            user_identity_verifier=verifier_accepting_alice,
        ),
        {
            "role_selections": [RoleSelection(MR, True, True)],
            "user_identity": UserIdentityRQ(UserIdentityType.KERBEROS, True, b"alice"),
        },
    ),
]


@pytest.mark.parametrize(
    ("policy", "extra"), [(p, e) for _, p, e in ROUND_TRIPS], ids=[n for n, _, _ in ROUND_TRIPS]
)
def test_round_trip_agrees_on_both_sides(policy: AcceptorPolicy, extra: dict[str, object]) -> None:
    request = build_associate_rq(
        called_ae_title="STORESCP",
        calling_ae_title="STORESCU",
        contexts=[
            (CT, [JPEG_2000, EXPLICIT_VR_LITTLE_ENDIAN]),
            (MR, [IMPLICIT_VR_LITTLE_ENDIAN]),
            (PATIENT_ROOT_FIND, [EXPLICIT_VR_LITTLE_ENDIAN]),
            (SC, [PRIVATE_SYNTAX]),
            (VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN]),
        ],
        max_pdu_length=32768,
        **extra,  # type: ignore[arg-type]
    )
    # Through the real codec, so that the AC we build is one a peer can decode.
    wire_request = decode_pdu(encode_pdu(request))
    assert isinstance(wire_request, AssociateRQ)
    answer = negotiate_as_acceptor(wire_request, policy)
    assert isinstance(answer, tuple)
    ac, acceptor_view = answer
    wire_ac = decode_pdu(encode_pdu(ac))
    assert isinstance(wire_ac, AssociateAC)
    requestor_view = interpret_associate_ac(request, wire_ac)

    assert requestor_view.contexts == acceptor_view.contexts
    assert requestor_view.rejected_contexts == acceptor_view.rejected_contexts
    assert set(acceptor_view.contexts) >= {1, 9}
    assert set(acceptor_view.rejected_contexts) >= {5, 7}
    assert requestor_view.max_operations_invoked == acceptor_view.max_operations_invoked
    assert requestor_view.max_operations_performed == acceptor_view.max_operations_performed
    assert (
        requestor_view.peer_max_pdu_length
        == acceptor_view.our_max_pdu_length
        == policy.max_pdu_length
    )
    assert requestor_view.our_max_pdu_length == acceptor_view.peer_max_pdu_length == 32768
    assert requestor_view.peer_implementation_class_uid == policy.implementation_class_uid
    assert acceptor_view.peer_implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert requestor_view.user_identity == acceptor_view.user_identity
    assert requestor_view.user_identity_response == acceptor_view.user_identity_response
    assert (requestor_view.called_ae_title, requestor_view.calling_ae_title) == (
        acceptor_view.called_ae_title,
        acceptor_view.calling_ae_title,
    )


# --- Interoperability: pynetdicom's PDU classes on both sides of our negotiation ------------------


@pytest.mark.peer
def test_pynetdicom_request_and_our_answer() -> None:
    need_module("pynetdicom")
    from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        AsynchronousOperationsWindowNegotiation,
        ImplementationClassUIDNotification,
        MaximumLengthNotification,
        SCP_SCU_RoleSelectionNegotiation,
    )
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = DICOM_APPLICATION_CONTEXT
    primitive.calling_ae_title = "PYNETDICOM"
    primitive.called_ae_title = "STORESCP"
    contexts = [
        build_context(CT, [JPEG_2000_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN]),
        build_context(PATIENT_ROOT_FIND),
    ]
    for index, context in enumerate(contexts):
        context.context_id = 2 * index + 1
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.3.4"
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 1
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT
    role.scu_role = True
    role.scp_role = True
    primitive.user_information = [max_length, class_uid, window, role]
    their_rq = A_ASSOCIATE_RQ()
    their_rq.from_primitive(primitive)

    request = decode_pdu(their_rq.encode())
    assert isinstance(request, AssociateRQ)
    policy = AcceptorPolicy(
        ae_title="STORESCP", require_called_ae_title=True, max_operations_performed=3
    )
    ac, negotiated = accept(request, policy)
    assert negotiated.peer_max_pdu_length == 16382
    assert negotiated.contexts[1].transfer_syntax == JPEG_2000_LOSSLESS

    their_ac = A_ASSOCIATE_AC()
    their_ac.decode(encode_pdu(ac))
    answer = their_ac.to_primitive()
    results = answer.presentation_context_definition_results_list
    assert [(c.context_id, c.result, c.transfer_syntax[0]) for c in results] == [
        (1, 0, JPEG_2000_LOSSLESS),
        (3, 3, IMPLICIT_VR_LITTLE_ENDIAN),
    ]
    items = {type(item).__name__: item for item in answer.user_information}
    assert items["MaximumLengthNotification"].maximum_length_received == policy.max_pdu_length
    assert (
        items["ImplementationClassUIDNotification"].implementation_class_uid
        == IMPLEMENTATION_CLASS_UID
    )
    assert items["AsynchronousOperationsWindowNegotiation"].maximum_number_operations_invoked == 3
    roles = items["SCP_SCU_RoleSelectionNegotiation"]
    assert (roles.sop_class_uid, roles.scu_role, roles.scp_role) == (CT, True, False)

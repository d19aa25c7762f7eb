"""Association negotiation as a policy: the A-ASSOCIATE-RQ in, the AC or RJ out.

Pure functions over the PDU values of :mod:`.pdu` (PS3.8 9.3.2-9.3.4, PS3.7 Annex D.3.3);
the association calls them at the A-ASSOCIATE indication/confirmation and keeps the
:class:`NegotiatedAssociation` they return. The facts relied on are in
``spec_notes/ps3.7-association-negotiation.md``. Decisions where the standard leaves room:

* Checks run in the order: protocol version, presentation context IDs (both the service
  provider's, PS3.8 AE-6), application context, called AE, calling AE, Maximum Length,
  user identity (the service user's). The first failure decides the A-ASSOCIATE-RJ.
* Context IDs that are even, outside 1-255 or repeated, or an RQ with no context at all,
  make the RQ unacceptable to the provider (PS3.8 Table 9-7 AE-6): A-ASSOCIATE-RJ
  permanent / ACSE provider / no-reason-given. Rejecting one context would not do: an AC
  cannot answer two contexts that share an ID, and PS3.8 9.3.3 needs one or more context
  items in the AC.
* No acceptable context is still an A-ASSOCIATE-AC (each context rejected, PS3.8 7.1.1.14);
  the requestor decides what to do with it.
* The transfer syntax is the requestor's first proposed one that we support: the requestor
  lists what its data is in, and choosing its order lets compressed data be stored as
  received instead of forcing the sender to transcode (``prefer_requestor_order=False``
  takes our order instead). A rejected context echoes the first proposed transfer syntax
  (PS3.8 9.3.3.2: not significant, not tested) rather than an empty sub-item that a strict
  decoder might refuse.
* AE titles compare with leading/trailing spaces removed (PS3.5 6.2: not significant),
  case-sensitively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .codes import (
    DICOM_APPLICATION_CONTEXT,
    AbortReason,
    AbortSource,
    ContextResult,
    RejectACSEReason,
    RejectPresentationReason,
    RejectResult,
    RejectSource,
    RejectUserReason,
    UserIdentityType,
)
from .errors import LocalProtocolError, RemoteProtocolError
from .pdu import (
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
    UserIdentityAC,
    UserIdentityRQ,
    UserItem,
)
from .uids import (
    ALL_TRANSFER_SYNTAXES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    STORAGE_SCP_ABSTRACT_SYNTAXES,
)

UserIdentityVerifier = Callable[[UserIdentityRQ, str], "bool | bytes | None"]
"""``(identity, calling AE title) -> verdict``: ``True`` accepts, ``bytes`` accepts with
that server response (PS3.7 D.3.3.7.2), ``False`` or ``None`` rejects (fail closed)."""

# 1 MiB: large enough that per-PDU overhead is noise at 1 GB/s (1000 PDUs a second), small
# enough for peers that size a send buffer from our value. The reader streams P-DATA, so
# a larger value costs us nothing; it is a policy field for whoever wants more.
DEFAULT_MAX_PDU_LENGTH = 1024 * 1024
# PS3.8 9.3.1: the PDU-length field is 32 bits.
_MAX_UINT32 = 0xFFFF_FFFF
# PS3.8 9.3.5.1: a PDV item is a 4-byte length, a context ID byte, a control byte and then
# data, so a Maximum Length of 6 or less cannot carry a single byte of a message.
MIN_PEER_MAX_PDU_LENGTH = 7
# PS3.8 9.3.2.2: context IDs are odd integers 1-255, so at most 128 of them.
MAX_PRESENTATION_CONTEXTS = 128
# PS3.7 D.3.3.3: the window fields are 16-bit; 0 means unlimited.
_MAX_UINT16 = 0xFFFF
# PS3.8 Table 9-18: the only defined Result/Reason values.
_CONTEXT_RESULTS = frozenset(ContextResult)

_REJECT_PROTOCOL_VERSION = AssociateRJ(
    RejectResult.PERMANENT,
    RejectSource.SERVICE_PROVIDER_ACSE,
    RejectACSEReason.PROTOCOL_VERSION_NOT_SUPPORTED,
)
_REJECT_PROVIDER_NO_REASON = AssociateRJ(
    RejectResult.PERMANENT, RejectSource.SERVICE_PROVIDER_ACSE, RejectACSEReason.NO_REASON
)
_REJECT_APPLICATION_CONTEXT = AssociateRJ(
    RejectResult.PERMANENT,
    RejectSource.SERVICE_USER,
    RejectUserReason.APPLICATION_CONTEXT_NOT_SUPPORTED,
)
_REJECT_CALLED_AE = AssociateRJ(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectUserReason.CALLED_AE_NOT_RECOGNIZED
)
_REJECT_CALLING_AE = AssociateRJ(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectUserReason.CALLING_AE_NOT_RECOGNIZED
)
_REJECT_USER_NO_REASON = AssociateRJ(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectUserReason.NO_REASON
)
# PS3.7 D.3.3.7 (note): an authorisation failure is a permanent rejection whose source is
# the ACSE-related service provider; "no-reason-given" is the only fitting reason there.
_REJECT_USER_IDENTITY = _REJECT_PROVIDER_NO_REASON


def association_limit_reject() -> AssociateRJ:
    """The RJ for "too many associations now": transient, presentation provider,
    local-limit-exceeded (PS3.8 Table 9-21); the server sends it, a retry may succeed."""
    return AssociateRJ(
        RejectResult.TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        RejectPresentationReason.LOCAL_LIMIT_EXCEEDED,
    )


# --- The policy and its outcome ------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptorPolicy:
    """What we accept as association acceptor (a storage SCP by default).

    ``abstract_syntaxes=None`` accepts any abstract syntax. ``max_operations_performed`` is
    the most operations we let the requestor have outstanding (we perform them),
    ``max_operations_invoked`` the most we would invoke on it; both 0 = unlimited, and only
    answered when the requestor proposed a window (PS3.7 D.3.3.3). ``accept_scp_role_for``
    lists the SOP classes for which we let the requestor act as SCP (we would be the SCU);
    the requestor's SCU role is always accepted (PS3.7 D.3.3.4).
    """

    ae_title: str
    require_called_ae_title: bool = False
    allowed_calling_ae_titles: frozenset[str] | None = None
    abstract_syntaxes: frozenset[str] | None = STORAGE_SCP_ABSTRACT_SYNTAXES
    transfer_syntaxes: tuple[str, ...] = ALL_TRANSFER_SYNTAXES
    prefer_requestor_order: bool = True
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    max_operations_performed: int = 1
    max_operations_invoked: int = 1
    accept_scp_role_for: frozenset[str] = frozenset()
    user_identity_verifier: UserIdentityVerifier | None = None
    require_user_identity: bool = False
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME

    def __post_init__(self) -> None:
        _check_ae_title(self.ae_title, "ae_title", ValueError)
        if not 1 <= self.max_pdu_length <= _MAX_UINT32:
            # We never send 0 (unlimited): a bound keeps a peer's PDU sizes in check.
            raise ValueError(f"max_pdu_length must be 1..{_MAX_UINT32}, not {self.max_pdu_length}")
        for name in ("max_operations_performed", "max_operations_invoked"):
            if not 0 <= getattr(self, name) <= _MAX_UINT16:
                raise ValueError(f"{name} must be 0..{_MAX_UINT16}")
        if not self.transfer_syntaxes:
            raise ValueError("transfer_syntaxes must not be empty")
        _check_implementation(
            self.implementation_class_uid, self.implementation_version_name, ValueError
        )


@dataclass(frozen=True, slots=True)
class NegotiatedContext:
    """An accepted presentation context.

    ``scu_role``/``scp_role`` are the roles of the association *requestor*, as in the role
    selection item (PS3.7 D.3.3.4); without one the requestor is SCU and the acceptor SCP.
    """

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = False

    @property
    def acceptor_is_scp(self) -> bool:
        """The acceptor performs operations the requestor invokes on this context."""
        return self.scu_role

    @property
    def acceptor_is_scu(self) -> bool:
        """The acceptor may invoke operations that the requestor performs."""
        return self.scp_role


@dataclass(frozen=True)
class NegotiatedAssociation:
    """What both sides agreed; ``peer_*``/``our_*`` are from the side that holds it.

    ``max_operations_invoked`` is how many operations the requestor may have outstanding,
    ``max_operations_performed`` how many the acceptor may have outstanding on the requestor
    (PS3.7 D.3.3.3; 1 = synchronous, 0 = unlimited). ``peer_max_pdu_length`` is the largest
    P-DATA-TF body we may send (0 = unlimited, PS3.8 D.1). ``rejected_contexts`` maps the ID
    of each context not accepted to its result (Table 9-18).
    """

    called_ae_title: str
    calling_ae_title: str
    contexts: Mapping[int, NegotiatedContext]
    peer_max_pdu_length: int
    our_max_pdu_length: int
    max_operations_invoked: int = 1
    max_operations_performed: int = 1
    peer_implementation_class_uid: str | None = None
    peer_implementation_version_name: str | None = None
    user_identity: UserIdentityRQ | None = None
    user_identity_response: bytes | None = None
    rejected_contexts: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))

    def find_context(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> NegotiatedContext | None:
        """The accepted context with the lowest ID for this abstract (and transfer) syntax."""
        for context_id in sorted(self.contexts):
            context = self.contexts[context_id]
            if context.abstract_syntax == abstract_syntax and (
                transfer_syntax is None or context.transfer_syntax == transfer_syntax
            ):
                return context
        return None


# --- Acceptor ---------------------------------------------------------------------------------


def negotiate_as_acceptor(
    request: AssociateRQ, policy: AcceptorPolicy
) -> tuple[AssociateAC, NegotiatedAssociation] | AssociateRJ:
    """Answer an A-ASSOCIATE-RQ: the AC and what it agrees, or the RJ."""
    # PS3.8 9.3.2: only bit 0 of the protocol version is defined (version 1).
    if not request.protocol_version & 0x0001:
        return _REJECT_PROTOCOL_VERSION
    if not _context_ids_valid(request.presentation_contexts):
        return _REJECT_PROVIDER_NO_REASON
    # PS3.7 A.2.1: DICOM defines one application context name.
    if request.application_context_name != DICOM_APPLICATION_CONTEXT:
        return _REJECT_APPLICATION_CONTEXT
    called = request.called_ae_title.strip()
    calling = request.calling_ae_title.strip()
    if policy.require_called_ae_title and called != policy.ae_title.strip():
        return _REJECT_CALLED_AE
    if policy.allowed_calling_ae_titles is not None and calling not in {
        title.strip() for title in policy.allowed_calling_ae_titles
    }:
        return _REJECT_CALLING_AE

    peer_max_length_item = request.find_user_item(MaximumLength)
    # PS3.8 D.1: an absent item, like the value 0, sets no limit.
    peer_max_pdu_length = peer_max_length_item.maximum_length if peer_max_length_item else 0
    if 0 < peer_max_pdu_length < MIN_PEER_MAX_PDU_LENGTH:
        return _REJECT_USER_NO_REASON

    identity = request.find_user_item(UserIdentityRQ)
    identity_answer: UserIdentityAC | None = None
    if identity is None:
        if policy.require_user_identity:
            return _REJECT_USER_IDENTITY
    elif policy.user_identity_verifier is not None:
        verdict = policy.user_identity_verifier(identity, calling)
        if verdict is None or verdict is False:
            return _REJECT_USER_IDENTITY
        # PS3.7 D.3.3.7: the 0x59 item only goes back when a positive response was asked
        # for; Table D.3-15: its server response is empty for username (+passcode) types.
        if identity.positive_response_requested:
            response = verdict if isinstance(verdict, bytes) else b""
            if identity.identity_type in (
                UserIdentityType.USERNAME,
                UserIdentityType.USERNAME_AND_PASSCODE,
            ):
                response = b""
            identity_answer = UserIdentityAC(response)

    proposed_roles = _first_role_per_sop_class(request.find_user_items(RoleSelection))
    answered_roles = {
        uid: (proposed_scu, proposed_scp and uid in policy.accept_scp_role_for)
        for uid, (proposed_scu, proposed_scp) in proposed_roles.items()
    }

    results: list[PresentationContextAC] = []
    accepted: dict[int, NegotiatedContext] = {}
    rejected: dict[int, int] = {}
    our_syntaxes = frozenset(policy.transfer_syntaxes)
    for proposed in request.presentation_contexts:
        result, transfer_syntax = _answer_context(proposed, policy, our_syntaxes)
        scu_role, scp_role = answered_roles.get(proposed.abstract_syntax, (True, False))
        if result == ContextResult.ACCEPTANCE and not (scu_role or scp_role):
            # Every role the requestor proposed was declined: nobody could use the context.
            result = ContextResult.USER_REJECTION
        if result == ContextResult.ACCEPTANCE:
            accepted[proposed.context_id] = NegotiatedContext(
                proposed.context_id,
                proposed.abstract_syntax,
                transfer_syntax,
                scu_role,
                scp_role,
            )
        else:
            rejected[proposed.context_id] = result
            transfer_syntax = proposed.transfer_syntaxes[0] if proposed.transfer_syntaxes else ""
        results.append(PresentationContextAC(proposed.context_id, result, transfer_syntax))

    # The user items in item-type order, the way peers usually send them.
    user_items: list[UserItem] = [
        MaximumLength(policy.max_pdu_length),
        ImplementationClassUID(policy.implementation_class_uid),
    ]
    window = request.find_user_item(AsynchronousOperationsWindow)
    invoked = performed = 1
    if window is not None:
        # PS3.7 D.3.3.3: answered only when proposed, never above what was proposed.
        invoked = _window_min(window.max_operations_invoked, policy.max_operations_performed)
        performed = _window_min(window.max_operations_performed, policy.max_operations_invoked)
        user_items.append(AsynchronousOperationsWindow(invoked, performed))
    # PS3.7 D.3.3.4: one answer per role selection item offered, none when none offered.
    user_items.extend(
        RoleSelection(uid, scu_role, scp_role)
        for uid, (scu_role, scp_role) in answered_roles.items()
    )
    user_items.append(ImplementationVersionName(policy.implementation_version_name))
    # SOP Class Extended Negotiation (0x56): we support none, and PS3.7 D.3.3.5 lets an
    # acceptor omit the answer, which means "not supported". Common Extended Negotiation
    # (0x57) has no AC form at all (PS3.7 D.3.3.6). Unknown items are ignored (PS3.8 D.1).
    if identity_answer is not None:
        user_items.append(identity_answer)

    accept = AssociateAC(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=tuple(results),
        user_items=tuple(user_items),
    )
    version_name = request.find_user_item(ImplementationVersionName)
    class_uid = request.find_user_item(ImplementationClassUID)
    negotiated = NegotiatedAssociation(
        called_ae_title=called,
        calling_ae_title=calling,
        contexts=MappingProxyType(accepted),
        peer_max_pdu_length=peer_max_pdu_length,
        our_max_pdu_length=policy.max_pdu_length,
        max_operations_invoked=invoked,
        max_operations_performed=performed,
        peer_implementation_class_uid=class_uid.uid if class_uid else None,
        peer_implementation_version_name=version_name.name if version_name else None,
        user_identity=identity,
        user_identity_response=identity_answer.server_response if identity_answer else None,
        rejected_contexts=MappingProxyType(rejected),
    )
    return accept, negotiated


def _context_ids_valid(contexts: Sequence[PresentationContextRQ]) -> bool:
    # PS3.8 9.3.2: one or more contexts; 9.3.2.2: odd IDs 1-255; 7.1.1.13: each unused.
    if not contexts:
        return False
    seen: set[int] = set()
    for context in contexts:
        context_id = context.context_id
        if not (1 <= context_id <= 255 and context_id & 1) or context_id in seen:
            return False
        seen.add(context_id)
    return True


def _answer_context(
    proposed: PresentationContextRQ, policy: AcceptorPolicy, our_syntaxes: frozenset[str]
) -> tuple[int, str]:
    if policy.abstract_syntaxes is not None and (
        proposed.abstract_syntax not in policy.abstract_syntaxes
    ):
        return ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""
    if policy.prefer_requestor_order:
        candidates: Sequence[str] = proposed.transfer_syntaxes
        supported: frozenset[str] | tuple[str, ...] = our_syntaxes
    else:
        candidates, supported = policy.transfer_syntaxes, proposed.transfer_syntaxes
    for transfer_syntax in candidates:
        if transfer_syntax in supported:
            return ContextResult.ACCEPTANCE, transfer_syntax
    return ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""


def _first_role_per_sop_class(items: Sequence[RoleSelection]) -> dict[str, tuple[bool, bool]]:
    # PS3.7 D.3.3.4: one item per SOP class; should a requestor send more, the first counts.
    roles: dict[str, tuple[bool, bool]] = {}
    for item in items:
        roles.setdefault(item.sop_class_uid, (item.scu_role, item.scp_role))
    return roles


def _window_min(proposed: int, ours: int) -> int:
    # PS3.7 D.3.3.3: 0 is unlimited, so it is the largest value, not the smallest.
    if proposed == 0:
        return ours
    if ours == 0:
        return proposed
    return min(proposed, ours)


# --- Requestor ----------------------------------------------------------------------------------


def build_associate_rq(
    *,
    called_ae_title: str,
    calling_ae_title: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    max_operations_invoked: int = 1,
    max_operations_performed: int = 1,
    user_identity: UserIdentityRQ | None = None,
    role_selections: Sequence[RoleSelection] = (),
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
) -> AssociateRQ:
    """An A-ASSOCIATE-RQ proposing ``contexts`` (abstract syntax, transfer syntaxes) in
    order, with context IDs 1, 3, 5... (PS3.8 9.3.2.2). Raises LocalProtocolError for
    what the standard cannot carry (more than 128 contexts, a context without a transfer
    syntax, a bad AE title or window)."""
    _check_ae_title(called_ae_title, "called AE title", LocalProtocolError)
    _check_ae_title(calling_ae_title, "calling AE title", LocalProtocolError)
    if not contexts:
        raise LocalProtocolError("an A-ASSOCIATE-RQ needs at least one presentation context")
    if len(contexts) > MAX_PRESENTATION_CONTEXTS:
        raise LocalProtocolError(
            f"{len(contexts)} presentation contexts proposed; odd IDs 1-255 allow "
            f"{MAX_PRESENTATION_CONTEXTS}"
        )
    if not 1 <= max_pdu_length <= _MAX_UINT32:
        raise LocalProtocolError(f"max_pdu_length must be 1..{_MAX_UINT32}")
    if not (
        0 <= max_operations_invoked <= _MAX_UINT16 and 0 <= max_operations_performed <= _MAX_UINT16
    ):
        raise LocalProtocolError(f"asynchronous operations window values must be 0..{_MAX_UINT16}")
    _check_implementation(implementation_class_uid, implementation_version_name, LocalProtocolError)

    proposed: list[PresentationContextRQ] = []
    for index, (abstract_syntax, transfer_syntaxes) in enumerate(contexts):
        if not transfer_syntaxes:
            raise LocalProtocolError(f"no transfer syntax proposed for {abstract_syntax}")
        proposed.append(
            PresentationContextRQ(2 * index + 1, abstract_syntax, tuple(transfer_syntaxes))
        )

    user_items: list[UserItem] = [
        MaximumLength(max_pdu_length),
        ImplementationClassUID(implementation_class_uid),
    ]
    # PS3.7 D.3.3.3: without the item both values default to 1, so 1/1 needs no item.
    if (max_operations_invoked, max_operations_performed) != (1, 1):
        user_items.append(
            AsynchronousOperationsWindow(max_operations_invoked, max_operations_performed)
        )
    user_items.extend(role_selections)
    user_items.append(ImplementationVersionName(implementation_version_name))
    if user_identity is not None:
        user_items.append(user_identity)
    return AssociateRQ(
        called_ae_title=called_ae_title,
        calling_ae_title=calling_ae_title,
        presentation_contexts=tuple(proposed),
        user_items=tuple(user_items),
    )


def interpret_associate_ac(request: AssociateRQ, accept: AssociateAC) -> NegotiatedAssociation:
    """What an A-ASSOCIATE-AC agreed to our ``request``.

    A context answered with an ID we did not propose, answered twice, accepted with a
    transfer syntax we did not propose for it, or given an undefined result is a protocol
    violation (A-ABORT, invalid-PDU-parameter-value). A context left unanswered counts as
    rejected with "no-reason"; one whose roles were all declined as user-rejection.
    """
    proposed_by_id = {context.context_id: context for context in request.presentation_contexts}
    proposed_roles = _first_role_per_sop_class(request.find_user_items(RoleSelection))
    answered_roles = _first_role_per_sop_class(accept.find_user_items(RoleSelection))

    accepted: dict[int, NegotiatedContext] = {}
    rejected: dict[int, int] = {}
    for answer in accept.presentation_contexts:
        proposed = proposed_by_id.get(answer.context_id)
        if proposed is None:
            raise _invalid_ac(f"context {answer.context_id} answered but never proposed")
        if answer.context_id in accepted or answer.context_id in rejected:
            raise _invalid_ac(f"context {answer.context_id} answered twice")
        if answer.result not in _CONTEXT_RESULTS:
            raise _invalid_ac(f"context {answer.context_id}: undefined result {answer.result}")
        if answer.result != ContextResult.ACCEPTANCE:
            rejected[answer.context_id] = answer.result
            continue
        if answer.transfer_syntax not in proposed.transfer_syntaxes:
            raise _invalid_ac(
                f"context {answer.context_id} accepted with transfer syntax "
                f"{answer.transfer_syntax!r}, which was not proposed for it"
            )
        scu_role, scp_role = _agreed_roles(
            proposed_roles.get(proposed.abstract_syntax),
            answered_roles.get(proposed.abstract_syntax),
        )
        if not (scu_role or scp_role):
            rejected[answer.context_id] = ContextResult.USER_REJECTION
            continue
        accepted[answer.context_id] = NegotiatedContext(
            answer.context_id, proposed.abstract_syntax, answer.transfer_syntax, scu_role, scp_role
        )
    for context_id in proposed_by_id:
        if context_id not in accepted and context_id not in rejected:
            rejected[context_id] = ContextResult.NO_REASON

    invoked = performed = 1
    proposed_window = request.find_user_item(AsynchronousOperationsWindow)
    answered_window = accept.find_user_item(AsynchronousOperationsWindow)
    if proposed_window is not None and answered_window is not None:
        # An acceptor may only lower the window; clamp rather than trust a larger answer.
        invoked = _window_min(
            proposed_window.max_operations_invoked, answered_window.max_operations_invoked
        )
        performed = _window_min(
            proposed_window.max_operations_performed, answered_window.max_operations_performed
        )

    our_max_length = request.find_user_item(MaximumLength)
    peer_max_length = accept.find_user_item(MaximumLength)
    class_uid = accept.find_user_item(ImplementationClassUID)
    version_name = accept.find_user_item(ImplementationVersionName)
    identity = request.find_user_item(UserIdentityRQ)
    identity_answer = accept.find_user_item(UserIdentityAC)
    return NegotiatedAssociation(
        called_ae_title=request.called_ae_title.strip(),
        calling_ae_title=request.calling_ae_title.strip(),
        contexts=MappingProxyType(accepted),
        peer_max_pdu_length=peer_max_length.maximum_length if peer_max_length else 0,
        our_max_pdu_length=our_max_length.maximum_length if our_max_length else 0,
        max_operations_invoked=invoked,
        max_operations_performed=performed,
        peer_implementation_class_uid=class_uid.uid if class_uid else None,
        peer_implementation_version_name=version_name.name if version_name else None,
        user_identity=identity,
        # PS3.7 D.3.3.7: a 0x59 item answers only a 0x58 item; ignore a stray one.
        user_identity_response=(
            identity_answer.server_response if identity and identity_answer else None
        ),
        rejected_contexts=MappingProxyType(rejected),
    )


def _agreed_roles(
    proposed: tuple[bool, bool] | None, answered: tuple[bool, bool] | None
) -> tuple[bool, bool]:
    # PS3.7 D.3.3.4: without a proposal, or without an answer to it, the defaults hold
    # (requestor SCU, acceptor SCP); an answer only grants roles that were proposed.
    if proposed is None or answered is None:
        return True, False
    return proposed[0] and answered[0], proposed[1] and answered[1]


def _invalid_ac(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"A-ASSOCIATE-AC: {message}",
        abort_source=AbortSource.SERVICE_PROVIDER,
        abort_reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
    )


# --- Shared checks --------------------------------------------------------------------------------


def _check_ae_title(title: str, what: str, error: type[Exception]) -> None:
    # PS3.8 9.3.2: 16 bytes, significant characters not all spaces; PS3.5 6.2 AE: no
    # backslash or control characters, basic G0 set.
    stripped = title.strip(" ")
    if (
        not stripped
        or len(title) > 16
        or not title.isascii()
        or not title.isprintable()
        or ("\\" in title)
    ):
        raise error(f"{what} must be 1-16 printable ASCII characters, not {title!r}")


def _check_implementation(class_uid: str, version_name: str, error: type[Exception]) -> None:
    # PS3.5 9.1: a UID is at most 64 characters; PS3.7 D.3.3.2: version name 1-16.
    if not class_uid or len(class_uid) > 64:
        raise error(f"implementation class UID must be 1-64 characters: {class_uid!r}")
    if not 1 <= len(version_name) <= 16 or not version_name.isascii():
        raise error(f"implementation version name must be 1-16 ASCII characters: {version_name!r}")


__all__ = [
    "DEFAULT_MAX_PDU_LENGTH",
    "MAX_PRESENTATION_CONTEXTS",
    "MIN_PEER_MAX_PDU_LENGTH",
    "AcceptorPolicy",
    "NegotiatedAssociation",
    "NegotiatedContext",
    "UserIdentityVerifier",
    "association_limit_reject",
    "build_associate_rq",
    "interpret_associate_ac",
    "negotiate_as_acceptor",
]

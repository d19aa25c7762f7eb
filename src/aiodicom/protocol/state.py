"""The DICOM Upper Layer state machine: PS3.8 9.2, Table 9-10, as one literal table.

In the manner of h11's ``_state.py``, this file owns every transition. The rules:

Rule 1: everything that moves the Upper Layer from one state to another lives here. The
    association never assigns a state itself; it asks :func:`transition` with the current
    state, the event (Evt1..Evt19) and its role, then performs the returned action
    (AE-n, DT-n, AR-n, AA-n) and adopts the returned state.

Rule 2: the next state lives only in :data:`TRANSITIONS`, a literal transcription of every
    non-empty cell of Table 9-10 (123 of the 13 x 19 = 247 cells), and nothing more: no
    extension of the standard (for example an ARTIM timeout in Sta7) is added here.

Rule 3: two action definitions choose their next state from something outside the
    (state, event) pair, and both are settled in this file:

    * AR-8 (release collision, Sta7 + Evt12): Sta9 when we are the association-requestor,
      Sta10 when we are the acceptor (Table 9-8). The table holds the marker
      :attr:`NextStateByRole.RELEASE_COLLISION`; :data:`RELEASE_COLLISION_NEXT_STATE`
      resolves it with the :class:`Role` passed to :func:`transition`.
    * AE-6 (A-ASSOCIATE-RQ received in Sta2): Sta3 if the request is acceptable to the
      service-provider, otherwise send A-ASSOCIATE-RJ, start ARTIM and go to Sta13
      (Table 9-6). The table holds Sta3. When the provider itself refuses the request
      (PS3.8 7.1.2.6, e.g. protocol version bit 0 not set, PS3.8 9.3.2), the association
      applies Evt8 from Sta3 at once, *before* reporting anything to its user: Sta3 +
      Evt8 is AE-8 (send A-ASSOCIATE-RJ, start ARTIM, Sta13), which has exactly the
      outputs of AE-6's "otherwise" branch (AE-6 has already stopped ARTIM). 7.1.2.6 also
      says the A-ASSOCIATE indication shall not be issued, so the association must make
      that check before it emits ``AssociationRequested``.

Rule 4: an empty cell of Table 9-10 is a combination the protocol gives no meaning to.
    The standard does not prescribe a reaction, so :func:`transition` raises:

    * a local primitive (Evt1, 7, 8, 9, 11, 14, 15) in a state where the user may not
      issue it (P-DATA before the association exists, A-RELEASE twice, A-ABORT after the
      association is gone) -> :class:`LocalProtocolError`, naming state and event; the
      association refuses the call and nothing is sent;
    * any other empty pair -> :class:`RemoteProtocolError` with abort reason
      UNEXPECTED_PDU, the safe reaction: abort. For PDU events this is a PDU that cannot
      arrive there (Sta1 and Sta4 have no open transport connection). For transport and
      timer events (Evt2, Evt5, Evt17, Evt18) an empty cell can only come from a fault in
      the I/O driver; tearing the association down is still the safe answer.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from .codes import AbortReason, AbortSource, PDUType
from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ACTION_DESCRIPTIONS",
    "ARTIM_STARTING_ACTIONS",
    "ARTIM_STOPPING_ACTIONS",
    "EVENT_DESCRIPTIONS",
    "EVENT_FOR_PDU_TYPE",
    "LOCAL_EVENTS",
    "RECEIVED_PDU_EVENTS",
    "RELEASE_COLLISION_NEXT_STATE",
    "STATE_DESCRIPTIONS",
    "TRANSITIONS",
    "TRANSPORT_CLOSING_ACTIONS",
    "Action",
    "Event",
    "NextStateByRole",
    "Role",
    "State",
    "transition",
]


class State(Enum):
    """The 13 states of PS3.8 9.2.1 (Tables 9-1 to 9-5); see :data:`STATE_DESCRIPTIONS`."""

    STA1 = "Sta1"
    STA2 = "Sta2"
    STA3 = "Sta3"
    STA4 = "Sta4"
    STA5 = "Sta5"
    STA6 = "Sta6"
    STA7 = "Sta7"
    STA8 = "Sta8"
    STA9 = "Sta9"
    STA10 = "Sta10"
    STA11 = "Sta11"
    STA12 = "Sta12"
    STA13 = "Sta13"

    # Members are singletons, so identity hashing is exact; it is done in C, where Enum's
    # own __hash__ is a Python call: (state, event) lookups run about twice as fast.
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


STATE_DESCRIPTIONS: Final[dict[State, str]] = {
    # Table 9-1, no association
    State.STA1: "idle",
    # Table 9-2, association establishment
    State.STA2: "transport connection open, waiting for an A-ASSOCIATE-RQ PDU",
    State.STA3: "waiting for the local user's A-ASSOCIATE response",
    State.STA4: "waiting for our transport connection to finish opening",
    State.STA5: "waiting for an A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
    # Table 9-3, data transfer
    State.STA6: "association established, ready for data transfer",
    # Table 9-4, association release (normal and collision)
    State.STA7: "waiting for an A-RELEASE-RP PDU",
    State.STA8: "waiting for the local user's A-RELEASE response",
    State.STA9: "release collision, requestor side: waiting for the local A-RELEASE response",
    State.STA10: "release collision, acceptor side: waiting for an A-RELEASE-RP PDU",
    State.STA11: "release collision, requestor side: waiting for an A-RELEASE-RP PDU",
    State.STA12: "release collision, acceptor side: waiting for the local A-RELEASE response",
    # Table 9-5, waiting for transport connection close
    State.STA13: "association gone, waiting for the transport connection to close",
}


class Event(Enum):
    """The 19 events, the rows of PS3.8 Table 9-10; see :data:`EVENT_DESCRIPTIONS`."""

    EVT1 = "Evt1"
    EVT2 = "Evt2"
    EVT3 = "Evt3"
    EVT4 = "Evt4"
    EVT5 = "Evt5"
    EVT6 = "Evt6"
    EVT7 = "Evt7"
    EVT8 = "Evt8"
    EVT9 = "Evt9"
    EVT10 = "Evt10"
    EVT11 = "Evt11"
    EVT12 = "Evt12"
    EVT13 = "Evt13"
    EVT14 = "Evt14"
    EVT15 = "Evt15"
    EVT16 = "Evt16"
    EVT17 = "Evt17"
    EVT18 = "Evt18"
    EVT19 = "Evt19"

    __hash__ = object.__hash__  # as for State

    def __str__(self) -> str:
        return self.value


EVENT_DESCRIPTIONS: Final[dict[Event, str]] = {
    Event.EVT1: "A-ASSOCIATE request primitive from the local user",
    Event.EVT2: "transport connection confirmed (our outgoing connect completed)",
    Event.EVT3: "A-ASSOCIATE-AC PDU received",
    Event.EVT4: "A-ASSOCIATE-RJ PDU received",
    Event.EVT5: "transport connection indication (a peer connected to us)",
    Event.EVT6: "A-ASSOCIATE-RQ PDU received",
    Event.EVT7: "A-ASSOCIATE response primitive, accept, from the local user",
    Event.EVT8: "A-ASSOCIATE response primitive, reject, from the local user",
    Event.EVT9: "P-DATA request primitive from the local user",
    Event.EVT10: "P-DATA-TF PDU received",
    Event.EVT11: "A-RELEASE request primitive from the local user",
    Event.EVT12: "A-RELEASE-RQ PDU received",
    Event.EVT13: "A-RELEASE-RP PDU received",
    Event.EVT14: "A-RELEASE response primitive from the local user",
    Event.EVT15: "A-ABORT request primitive from the local user",
    Event.EVT16: "A-ABORT PDU received",
    Event.EVT17: "transport connection closed indication",
    Event.EVT18: "ARTIM timer expired",
    Event.EVT19: "unrecognized or invalid PDU received",
}

# The primitives our own user issues: an empty cell for these is our user's mistake.
LOCAL_EVENTS: Final = frozenset(
    {Event.EVT1, Event.EVT7, Event.EVT8, Event.EVT9, Event.EVT11, Event.EVT14, Event.EVT15}
)

# Events caused by bytes from the peer (Evt19 covers everything that did not decode).
RECEIVED_PDU_EVENTS: Final = frozenset(
    {
        Event.EVT3,
        Event.EVT4,
        Event.EVT6,
        Event.EVT10,
        Event.EVT12,
        Event.EVT13,
        Event.EVT16,
        Event.EVT19,
    }
)

# PS3.8 9.3.1 PDU types -> their "PDU received" event; an unknown type is Evt19.
EVENT_FOR_PDU_TYPE: Final[dict[PDUType, Event]] = {
    PDUType.ASSOCIATE_RQ: Event.EVT6,
    PDUType.ASSOCIATE_AC: Event.EVT3,
    PDUType.ASSOCIATE_RJ: Event.EVT4,
    PDUType.P_DATA_TF: Event.EVT10,
    PDUType.RELEASE_RQ: Event.EVT12,
    PDUType.RELEASE_RP: Event.EVT13,
    PDUType.ABORT: Event.EVT16,
}


class Action(Enum):
    """The actions of PS3.8 9.2.2 (Tables 9-6 to 9-9); see :data:`ACTION_DESCRIPTIONS`."""

    AE_1 = "AE-1"
    AE_2 = "AE-2"
    AE_3 = "AE-3"
    AE_4 = "AE-4"
    AE_5 = "AE-5"
    AE_6 = "AE-6"
    AE_7 = "AE-7"
    AE_8 = "AE-8"
    DT_1 = "DT-1"
    DT_2 = "DT-2"
    AR_1 = "AR-1"
    AR_2 = "AR-2"
    AR_3 = "AR-3"
    AR_4 = "AR-4"
    AR_5 = "AR-5"
    AR_6 = "AR-6"
    AR_7 = "AR-7"
    AR_8 = "AR-8"
    AR_9 = "AR-9"
    AR_10 = "AR-10"
    AA_1 = "AA-1"
    AA_2 = "AA-2"
    AA_3 = "AA-3"
    AA_4 = "AA-4"
    AA_5 = "AA-5"
    AA_6 = "AA-6"
    AA_7 = "AA-7"
    AA_8 = "AA-8"

    __hash__ = object.__hash__  # as for State

    def __str__(self) -> str:
        return self.value


# What each action does, in our words. The next state is deliberately not repeated here:
# it lives only in TRANSITIONS (Rule 2).
ACTION_DESCRIPTIONS: Final[dict[Action, str]] = {
    # Table 9-6, association establishment
    Action.AE_1: "ask the transport service to open a connection to the peer",
    Action.AE_2: "send the A-ASSOCIATE-RQ PDU",
    Action.AE_3: "report to the user that the association was accepted",
    Action.AE_4: "report to the user that the association was rejected; close the transport",
    Action.AE_5: "accept the incoming transport connection; start ARTIM",
    Action.AE_6: (
        "stop ARTIM; if the provider can accept the A-ASSOCIATE-RQ, report it to the user, "
        "otherwise send A-ASSOCIATE-RJ and start ARTIM"
    ),
    Action.AE_7: "send the A-ASSOCIATE-AC PDU",
    Action.AE_8: "send the A-ASSOCIATE-RJ PDU; start ARTIM",
    # Table 9-7, data transfer
    Action.DT_1: "send a P-DATA-TF PDU",
    Action.DT_2: "report the received P-DATA to the user",
    # Table 9-8, association release
    Action.AR_1: "send the A-RELEASE-RQ PDU",
    Action.AR_2: "report the peer's release request to the user",
    Action.AR_3: "report to the user that the release completed; close the transport",
    Action.AR_4: "send the A-RELEASE-RP PDU; start ARTIM",
    Action.AR_5: "stop ARTIM (the transport is closed)",
    Action.AR_6: "report the received P-DATA to the user (while our release is pending)",
    Action.AR_7: "send a P-DATA-TF PDU (before answering the peer's release request)",
    Action.AR_8: "report the peer's release request to the user: a release collision",
    Action.AR_9: "send the A-RELEASE-RP PDU (collision, requestor side)",
    Action.AR_10: "report to the user that the peer answered our release (collision)",
    # Table 9-9, association abort
    Action.AA_1: "send an A-ABORT PDU (source: service-user); start or restart ARTIM",
    Action.AA_2: "stop ARTIM if it runs; close the transport",
    Action.AA_3: (
        "report the peer's abort to the user (A-ABORT if the peer's user aborted, "
        "A-P-ABORT if its provider did); close the transport"
    ),
    Action.AA_4: "report a provider abort (A-P-ABORT) to the user: the transport closed",
    Action.AA_5: "stop ARTIM (the transport closed before any A-ASSOCIATE-RQ)",
    Action.AA_6: "ignore the PDU",
    Action.AA_7: "send an A-ABORT PDU",
    Action.AA_8: (
        "send an A-ABORT PDU (source: service-provider), report an A-P-ABORT to the user "
        "and start ARTIM"
    ),
}

# ARTIM bookkeeping, from the action definitions of Tables 9-6, 9-8 and 9-9. AE-6 stops
# ARTIM and, only when the provider rejects, starts it again (see Rule 3).
ARTIM_STARTING_ACTIONS: Final = frozenset(
    {Action.AE_5, Action.AE_8, Action.AR_4, Action.AA_1, Action.AA_8}
)
ARTIM_STOPPING_ACTIONS: Final = frozenset({Action.AE_6, Action.AR_5, Action.AA_2, Action.AA_5})

# The actions whose definition includes "close transport connection". AR-5, AA-4 and AA-5
# also end in Sta1 but follow Evt17: the transport is already closed.
TRANSPORT_CLOSING_ACTIONS: Final = frozenset({Action.AE_4, Action.AR_3, Action.AA_2, Action.AA_3})


class Role(Enum):
    """Which side of the association we are: only AR-8 depends on it (PS3.8 Table 9-8)."""

    REQUESTOR = "association-requestor"
    ACCEPTOR = "association-acceptor"

    __hash__ = object.__hash__  # as for State


class NextStateByRole(Enum):
    """The marker in :data:`TRANSITIONS` for a next state that depends on our :class:`Role`."""

    RELEASE_COLLISION = "AR-8: Sta9 for the association-requestor, Sta10 for the acceptor"


# PS3.8 Table 9-8, AR-8: the requestor answers the collision first (Sta9 -> AR-9 -> Sta11),
# the acceptor waits for that answer (Sta10 -> AR-10 -> Sta12).
RELEASE_COLLISION_NEXT_STATE: Final[dict[Role, State]] = {
    Role.REQUESTOR: State.STA9,
    Role.ACCEPTOR: State.STA10,
}


# PS3.8 Table 9-10, row by row (event), every non-empty cell in column (state) order.
TRANSITIONS: Final[dict[tuple[State, Event], tuple[Action, State | NextStateByRole]]] = {
    # Evt1: A-ASSOCIATE request (local user)
    (State.STA1, Event.EVT1): (Action.AE_1, State.STA4),
    # Evt2: transport connection confirm
    (State.STA4, Event.EVT2): (Action.AE_2, State.STA5),
    # Evt3: A-ASSOCIATE-AC PDU received
    (State.STA2, Event.EVT3): (Action.AA_1, State.STA13),
    (State.STA3, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT3): (Action.AE_3, State.STA6),
    (State.STA6, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA7, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA8, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA11, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA12, Event.EVT3): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT3): (Action.AA_6, State.STA13),
    # Evt4: A-ASSOCIATE-RJ PDU received
    (State.STA2, Event.EVT4): (Action.AA_1, State.STA13),
    (State.STA3, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT4): (Action.AE_4, State.STA1),
    (State.STA6, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA7, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA8, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA11, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA12, Event.EVT4): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT4): (Action.AA_6, State.STA13),
    # Evt5: transport connection indication
    (State.STA1, Event.EVT5): (Action.AE_5, State.STA2),
    # Evt6: A-ASSOCIATE-RQ PDU received (AE-6's reject branch: see Rule 3)
    (State.STA2, Event.EVT6): (Action.AE_6, State.STA3),
    (State.STA3, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA6, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA7, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA8, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA11, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA12, Event.EVT6): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT6): (Action.AA_7, State.STA13),
    # Evt7: A-ASSOCIATE response primitive (accept)
    (State.STA3, Event.EVT7): (Action.AE_7, State.STA6),
    # Evt8: A-ASSOCIATE response primitive (reject)
    (State.STA3, Event.EVT8): (Action.AE_8, State.STA13),
    # Evt9: P-DATA request primitive
    (State.STA6, Event.EVT9): (Action.DT_1, State.STA6),
    (State.STA8, Event.EVT9): (Action.AR_7, State.STA8),
    # Evt10: P-DATA-TF PDU received
    (State.STA2, Event.EVT10): (Action.AA_1, State.STA13),
    (State.STA3, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA6, Event.EVT10): (Action.DT_2, State.STA6),
    (State.STA7, Event.EVT10): (Action.AR_6, State.STA7),
    (State.STA8, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA11, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA12, Event.EVT10): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT10): (Action.AA_6, State.STA13),
    # Evt11: A-RELEASE request primitive
    (State.STA6, Event.EVT11): (Action.AR_1, State.STA7),
    # Evt12: A-RELEASE-RQ PDU received
    (State.STA2, Event.EVT12): (Action.AA_1, State.STA13),
    (State.STA3, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA6, Event.EVT12): (Action.AR_2, State.STA8),
    (State.STA7, Event.EVT12): (Action.AR_8, NextStateByRole.RELEASE_COLLISION),
    (State.STA8, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA11, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA12, Event.EVT12): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT12): (Action.AA_6, State.STA13),
    # Evt13: A-RELEASE-RP PDU received
    (State.STA2, Event.EVT13): (Action.AA_1, State.STA13),
    (State.STA3, Event.EVT13): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT13): (Action.AA_8, State.STA13),
    (State.STA6, Event.EVT13): (Action.AA_8, State.STA13),
    (State.STA7, Event.EVT13): (Action.AR_3, State.STA1),
    (State.STA8, Event.EVT13): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT13): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT13): (Action.AR_10, State.STA12),
    (State.STA11, Event.EVT13): (Action.AR_3, State.STA1),
    (State.STA12, Event.EVT13): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT13): (Action.AA_6, State.STA13),
    # Evt14: A-RELEASE response primitive
    (State.STA8, Event.EVT14): (Action.AR_4, State.STA13),
    (State.STA9, Event.EVT14): (Action.AR_9, State.STA11),
    (State.STA12, Event.EVT14): (Action.AR_4, State.STA13),
    # Evt15: A-ABORT request primitive (Sta2 and Sta13 are empty: no user-visible association)
    (State.STA3, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA4, Event.EVT15): (Action.AA_2, State.STA1),
    (State.STA5, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA6, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA7, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA8, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA9, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA10, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA11, Event.EVT15): (Action.AA_1, State.STA13),
    (State.STA12, Event.EVT15): (Action.AA_1, State.STA13),
    # Evt16: A-ABORT PDU received
    (State.STA2, Event.EVT16): (Action.AA_2, State.STA1),
    (State.STA3, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA5, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA6, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA7, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA8, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA9, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA10, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA11, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA12, Event.EVT16): (Action.AA_3, State.STA1),
    (State.STA13, Event.EVT16): (Action.AA_2, State.STA1),
    # Evt17: transport connection closed indication
    (State.STA2, Event.EVT17): (Action.AA_5, State.STA1),
    (State.STA3, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA4, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA5, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA6, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA7, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA8, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA9, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA10, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA11, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA12, Event.EVT17): (Action.AA_4, State.STA1),
    (State.STA13, Event.EVT17): (Action.AR_5, State.STA1),
    # Evt18: ARTIM timer expired (ARTIM only runs in Sta2 and Sta13)
    (State.STA2, Event.EVT18): (Action.AA_2, State.STA1),
    (State.STA13, Event.EVT18): (Action.AA_2, State.STA1),
    # Evt19: unrecognized or invalid PDU received
    (State.STA2, Event.EVT19): (Action.AA_1, State.STA13),
    (State.STA3, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA5, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA6, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA7, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA8, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA9, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA10, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA11, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA12, Event.EVT19): (Action.AA_8, State.STA13),
    (State.STA13, Event.EVT19): (Action.AA_7, State.STA13),
}


def _resolved_for(role: Role) -> dict[tuple[State, Event], tuple[Action, State]]:
    # Settle the role-dependent cells once at import, so that transition() is a single
    # dict lookup on the hot path (it runs for every PDU).
    resolved: dict[tuple[State, Event], tuple[Action, State]] = {}
    for key, (action, next_state) in TRANSITIONS.items():
        if isinstance(next_state, NextStateByRole):
            next_state = RELEASE_COLLISION_NEXT_STATE[role]
        resolved[key] = (action, next_state)
    return resolved


_TRANSITIONS_BY_ROLE: Final[dict[Role, dict[tuple[State, Event], tuple[Action, State]]]] = {
    role: _resolved_for(role) for role in Role
}


def transition(state: State, event: Event, role: Role) -> tuple[Action, State]:
    """The action to perform and the state to adopt for ``event`` in ``state`` (Table 9-10).

    Raises :class:`LocalProtocolError` for a local primitive the user may not issue in
    ``state``, and :class:`RemoteProtocolError` (abort reason UNEXPECTED_PDU) for any other
    empty cell of the table.
    """
    try:
        return _TRANSITIONS_BY_ROLE[role][(state, event)]
    except KeyError:
        pass
    where = f"{event} ({EVENT_DESCRIPTIONS[event]}) in {state} ({STATE_DESCRIPTIONS[state]})"
    if event in LOCAL_EVENTS:
        raise LocalProtocolError(f"not allowed now: {where}; PS3.8 Table 9-10 has no such cell")
    raise RemoteProtocolError(
        f"unexpected: {where}; PS3.8 Table 9-10 has no such cell",
        abort_source=AbortSource.SERVICE_PROVIDER,
        abort_reason=AbortReason.UNEXPECTED_PDU,
    )

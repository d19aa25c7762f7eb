"""The Upper Layer state machine against a second, independent reading of PS3.8 9.2.

``TABLE_9_10`` below is transcribed again from the standard (not generated from
``aiodicom.protocol.state``); ``STANDARD_NEXT_STATE`` is the "Next state is ..." line of each
action definition in Tables 9-6 to 9-9. Every (state, event, role) is checked against them.
"""

from __future__ import annotations

import itertools

import pytest

from aiodicom.protocol.codes import AbortReason, AbortSource, PDUType
from aiodicom.protocol.errors import LocalProtocolError, RemoteProtocolError
from aiodicom.protocol.state import (
    ACTION_DESCRIPTIONS,
    ARTIM_STARTING_ACTIONS,
    ARTIM_STOPPING_ACTIONS,
    EVENT_DESCRIPTIONS,
    EVENT_FOR_PDU_TYPE,
    LOCAL_EVENTS,
    RECEIVED_PDU_EVENTS,
    RELEASE_COLLISION_NEXT_STATE,
    STATE_DESCRIPTIONS,
    TRANSITIONS,
    TRANSPORT_CLOSING_ACTIONS,
    Action,
    Event,
    NextStateByRole,
    Role,
    State,
    transition,
)

# PS3.8 Table 9-10: rows are events, columns Sta1..Sta13, "." is an empty cell.
TABLE_9_10 = """
        Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
Evt1    AE-1  .     .     .     .     .     .     .     .     .     .     .     .
Evt2    .     .     .     AE-2  .     .     .     .     .     .     .     .     .
Evt3    .     AA-1  AA-8  .     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4    .     AA-1  AA-8  .     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt5    AE-5  .     .     .     .     .     .     .     .     .     .     .     .
Evt6    .     AE-6  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt7    .     .     AE-7  .     .     .     .     .     .     .     .     .     .
Evt8    .     .     AE-8  .     .     .     .     .     .     .     .     .     .
Evt9    .     .     .     .     .     DT-1  .     AR-7  .     .     .     .     .
Evt10   .     AA-1  AA-8  .     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt11   .     .     .     .     .     AR-1  .     .     .     .     .     .     .
Evt12   .     AA-1  AA-8  .     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13   .     AA-1  AA-8  .     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt14   .     .     .     .     .     .     .     AR-4  AR-9  .     .     AR-4  .
Evt15   .     .     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  .
Evt16   .     AA-2  AA-3  .     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17   .     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18   .     AA-2  .     .     .     .     .     .     .     .     .     .     AA-2
Evt19   .     AA-1  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""

# Tables 9-6 to 9-9, "Next state is ...". AE-6 names Sta3 (request acceptable to the
# provider; its reject branch is Sta13) and AR-8 depends on the role (None here).
STANDARD_NEXT_STATE: dict[str, str | None] = {
    "AE-1": "Sta4",
    "AE-2": "Sta5",
    "AE-3": "Sta6",
    "AE-4": "Sta1",
    "AE-5": "Sta2",
    "AE-6": "Sta3",
    "AE-7": "Sta6",
    "AE-8": "Sta13",
    "DT-1": "Sta6",
    "DT-2": "Sta6",
    "AR-1": "Sta7",
    "AR-2": "Sta8",
    "AR-3": "Sta1",
    "AR-4": "Sta13",
    "AR-5": "Sta1",
    "AR-6": "Sta7",
    "AR-7": "Sta8",
    "AR-8": None,
    "AR-9": "Sta11",
    "AR-10": "Sta12",
    "AA-1": "Sta13",
    "AA-2": "Sta1",
    "AA-3": "Sta1",
    "AA-4": "Sta1",
    "AA-5": "Sta1",
    "AA-6": "Sta13",
    "AA-7": "Sta13",
    "AA-8": "Sta13",
}
AE6_REJECT_NEXT_STATE = "Sta13"
AR8_NEXT_STATE = {Role.REQUESTOR: "Sta9", Role.ACCEPTOR: "Sta10"}

# The primitives issued by the local user (PS3.8 Table 9-10 event names).
USER_PRIMITIVES = {"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"}


def _parse_table() -> dict[tuple[str, str], str]:
    header, *rows = TABLE_9_10.strip().splitlines()
    states = header.split()
    assert states == [f"Sta{n}" for n in range(1, 14)]
    cells: dict[tuple[str, str], str] = {}
    for row_number, row in enumerate(rows, start=1):
        event, *actions = row.split()
        assert event == f"Evt{row_number}"
        assert len(actions) == len(states), row
        for state, action in zip(states, actions, strict=True):
            if action != ".":
                cells[(state, event)] = action
    assert row_number == 19
    return cells


CELLS = _parse_table()
ALL_CASES = list(itertools.product(State, Event, Role))


def _expected(state: State, event: Event, role: Role) -> tuple[str, str] | None:
    action = CELLS.get((state.value, event.value))
    if action is None:
        return None
    next_state = STANDARD_NEXT_STATE[action]
    if action == "AR-8":
        next_state = AR8_NEXT_STATE[role]
    assert next_state is not None
    return action, next_state


# --- every cell, both roles ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "role"), ALL_CASES, ids=[f"{s}-{e}-{r.name}" for s, e, r in ALL_CASES]
)
def test_every_state_and_event_matches_table_9_10(state: State, event: Event, role: Role) -> None:
    expected = _expected(state, event, role)
    if expected is not None:
        action, next_state = transition(state, event, role)
        assert (action.value, next_state.value) == expected
        return
    if event.value in USER_PRIMITIVES:
        with pytest.raises(LocalProtocolError) as raised:
            transition(state, event, role)
    else:
        with pytest.raises(RemoteProtocolError) as raised:
            transition(state, event, role)
        assert raised.value.abort_reason == AbortReason.UNEXPECTED_PDU
        assert raised.value.abort_source == AbortSource.SERVICE_PROVIDER
    message = str(raised.value)
    assert f"{state.value} " in message
    assert f"{event.value} " in message


def test_table_holds_exactly_the_non_empty_cells() -> None:
    keys = {(state.value, event.value) for state, event in TRANSITIONS}
    assert keys == set(CELLS)
    assert len(TRANSITIONS) == 123  # of 13 x 19 = 247 cells


def test_table_actions_match_the_second_transcription() -> None:
    for (state, event), (action, _) in TRANSITIONS.items():
        assert action.value == CELLS[(state.value, event.value)], (state, event)


# --- invariants from the action definitions (Tables 9-6 to 9-9) ---------------------------


def test_every_next_state_is_the_one_its_action_defines() -> None:
    for key, (action, next_state) in TRANSITIONS.items():
        defined = STANDARD_NEXT_STATE[action.value]
        if defined is None:
            assert next_state is NextStateByRole.RELEASE_COLLISION, key
        else:
            assert isinstance(next_state, State), key
            assert next_state.value == defined, key


def test_only_ar_8_depends_on_the_role() -> None:
    by_role = [key for key, (_, nxt) in TRANSITIONS.items() if isinstance(nxt, NextStateByRole)]
    assert by_role == [(State.STA7, Event.EVT12)]
    assert {role: state.value for role, state in RELEASE_COLLISION_NEXT_STATE.items()} == (
        AR8_NEXT_STATE
    )


def test_transition_never_returns_a_marker() -> None:
    for (state, event), role in itertools.product(TRANSITIONS, Role):
        _, next_state = transition(state, event, role)
        assert isinstance(next_state, State)


def test_artim_runs_only_in_sta2_and_sta13() -> None:
    # Entering Sta2/Sta13 from elsewhere starts ARTIM; leaving them to Sta1 stops it or
    # closes a transport already closed. AE-6 stops it on the way to Sta3.
    timed = {State.STA2, State.STA13}
    for (state, _event), (action, next_state) in TRANSITIONS.items():
        if next_state in timed and state not in timed:
            assert action in ARTIM_STARTING_ACTIONS, (state, action)
        if state in timed and next_state not in timed:
            assert action in ARTIM_STOPPING_ACTIONS, (state, action)
        if action in ARTIM_STARTING_ACTIONS:
            assert next_state in timed, (state, action)


def test_every_way_back_to_idle_closes_or_follows_a_closed_transport() -> None:
    for (state, event), (action, next_state) in TRANSITIONS.items():
        if next_state is State.STA1 and state is not State.STA1:
            assert action in TRANSPORT_CLOSING_ACTIONS or event is Event.EVT17, (state, event)
        if action in TRANSPORT_CLOSING_ACTIONS:
            assert next_state is State.STA1


# --- spot checks, in the standard's words -------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "action", "next_state"),
    [
        # A-ASSOCIATE-RQ PDU in Sta2: AE-6, A-ASSOCIATE indication, Sta3.
        (State.STA2, Event.EVT6, Action.AE_6, State.STA3),
        # ARTIM expiry while waiting for the transport close: AA-2, Sta1.
        (State.STA13, Event.EVT18, Action.AA_2, State.STA1),
        # Unrecognized or invalid PDU in data transfer: AA-8, Sta13.
        (State.STA6, Event.EVT19, Action.AA_8, State.STA13),
        # A-ABORT PDU after the association ended: AA-2 (close, stop ARTIM), Sta1.
        (State.STA13, Event.EVT16, Action.AA_2, State.STA1),
        # P-DATA-TF PDU after the association ended: AA-6, ignore it.
        (State.STA13, Event.EVT10, Action.AA_6, State.STA13),
        # A-ASSOCIATE-AC PDU sent to an acceptor still awaiting the RQ: AA-1.
        (State.STA2, Event.EVT3, Action.AA_1, State.STA13),
        # A-ASSOCIATE-RQ PDU after the association ended: AA-7, send A-ABORT.
        (State.STA13, Event.EVT6, Action.AA_7, State.STA13),
        # Transport closed before any A-ASSOCIATE-RQ: AA-5, stop ARTIM, no indication.
        (State.STA2, Event.EVT17, Action.AA_5, State.STA1),
        # Transport closed in Sta13: AR-5.
        (State.STA13, Event.EVT17, Action.AR_5, State.STA1),
        # A-ABORT request while still connecting: AA-2.
        (State.STA4, Event.EVT15, Action.AA_2, State.STA1),
        # P-DATA request while answering the peer's release: AR-7, stay in Sta8.
        (State.STA8, Event.EVT9, Action.AR_7, State.STA8),
    ],
)
@pytest.mark.parametrize("role", list(Role))
def test_spot_checks(
    state: State, event: Event, action: Action, next_state: State, role: Role
) -> None:
    assert transition(state, event, role) == (action, next_state)


def test_release_collision_depends_on_role() -> None:
    assert transition(State.STA7, Event.EVT12, Role.REQUESTOR) == (Action.AR_8, State.STA9)
    assert transition(State.STA7, Event.EVT12, Role.ACCEPTOR) == (Action.AR_8, State.STA10)


def test_provider_reject_from_sta3_ends_where_ae_6_reject_branch_ends() -> None:
    # Rule 3 of the module: AE-6 then Evt8 (AE-8) equals AE-6's "otherwise" branch.
    action, state = transition(State.STA2, Event.EVT6, Role.ACCEPTOR)
    assert (action, state) == (Action.AE_6, State.STA3)
    action, state = transition(state, Event.EVT8, Role.ACCEPTOR)
    assert action is Action.AE_8
    assert state.value == AE6_REJECT_NEXT_STATE


def test_abort_request_where_no_association_is_visible_is_a_local_error() -> None:
    for state in (State.STA1, State.STA2, State.STA13):
        with pytest.raises(LocalProtocolError):
            transition(state, Event.EVT15, Role.ACCEPTOR)


# --- two machines joined: the PDUs each action sends reach the other side ------------------

# The PDU (as the receiver's event) that an action puts on the wire.
SENT_PDU = {
    Action.AE_2: Event.EVT6,
    Action.AE_7: Event.EVT3,
    Action.AE_8: Event.EVT4,
    Action.DT_1: Event.EVT10,
    Action.AR_7: Event.EVT10,
    Action.AR_1: Event.EVT12,
    Action.AR_4: Event.EVT13,
    Action.AR_9: Event.EVT13,
    Action.AA_1: Event.EVT16,
    Action.AA_7: Event.EVT16,
    Action.AA_8: Event.EVT16,
}


class _Side:
    def __init__(self, role: Role, state: State) -> None:
        self.role = role
        self.state = state
        self.actions: list[Action] = []

    def handle(self, event: Event) -> Event | None:
        action, self.state = transition(self.state, event, self.role)
        self.actions.append(action)
        return SENT_PDU.get(action)


def test_whole_association_between_two_machines() -> None:
    requestor = _Side(Role.REQUESTOR, State.STA1)
    acceptor = _Side(Role.ACCEPTOR, State.STA1)
    assert requestor.handle(Event.EVT1) is None  # AE-1: connect
    assert acceptor.handle(Event.EVT5) is None  # AE-5: connection accepted
    rq = requestor.handle(Event.EVT2)  # AE-2 sends the A-ASSOCIATE-RQ
    assert rq is Event.EVT6
    assert acceptor.handle(rq) is None  # AE-6: indication to the user
    ac = acceptor.handle(Event.EVT7)  # AE-7 sends the A-ASSOCIATE-AC
    assert ac is Event.EVT3
    assert requestor.handle(ac) is None  # AE-3: confirmation to the user
    assert (requestor.state, acceptor.state) == (State.STA6, State.STA6)
    data = requestor.handle(Event.EVT9)
    assert data is not None
    assert acceptor.handle(data) is None  # DT-2
    release_rq = requestor.handle(Event.EVT11)
    assert release_rq is not None
    assert acceptor.handle(release_rq) is None  # AR-2
    release_rp = acceptor.handle(Event.EVT14)  # AR-4, ARTIM started
    assert release_rp is not None
    assert requestor.handle(release_rp) is None  # AR-3: confirmation, close
    assert acceptor.handle(Event.EVT17) is None  # AR-5
    assert (requestor.state, acceptor.state) == (State.STA1, State.STA1)


def test_release_collision_between_two_machines_ends_idle_on_both_sides() -> None:
    requestor = _Side(Role.REQUESTOR, State.STA6)
    acceptor = _Side(Role.ACCEPTOR, State.STA6)
    # Both users ask to release at once; both A-RELEASE-RQ PDUs cross on the wire.
    from_requestor = requestor.handle(Event.EVT11)
    from_acceptor = acceptor.handle(Event.EVT11)
    assert from_requestor is from_acceptor is Event.EVT12
    assert requestor.handle(from_acceptor) is None
    assert acceptor.handle(from_requestor) is None
    assert (requestor.state, acceptor.state) == (State.STA9, State.STA10)
    # The requestor's user answers first (AR-9), the acceptor confirms (AR-10) and answers.
    release_rp = requestor.handle(Event.EVT14)
    assert requestor.state is State.STA11
    assert release_rp is not None
    assert acceptor.handle(release_rp) is None
    assert acceptor.state is State.STA12
    release_rp = acceptor.handle(Event.EVT14)  # AR-4
    assert release_rp is not None
    assert requestor.handle(release_rp) is None  # AR-3
    assert acceptor.handle(Event.EVT17) is None  # AR-5
    assert (requestor.state, acceptor.state) == (State.STA1, State.STA1)


# --- names and companion sets -------------------------------------------------------------


def test_names_are_the_standards() -> None:
    assert [s.value for s in State] == [f"Sta{n}" for n in range(1, 14)]
    assert [e.value for e in Event] == [f"Evt{n}" for n in range(1, 20)]
    assert {a.value for a in Action} == set(STANDARD_NEXT_STATE)
    assert str(State.STA10) == "Sta10"
    assert str(Event.EVT19) == "Evt19"
    assert str(Action.AR_10) == "AR-10"


def test_every_member_is_described() -> None:
    assert set(STATE_DESCRIPTIONS) == set(State)
    assert set(EVENT_DESCRIPTIONS) == set(Event)
    assert set(ACTION_DESCRIPTIONS) == set(Action)
    assert all(STATE_DESCRIPTIONS.values())
    assert all(EVENT_DESCRIPTIONS.values())
    assert all(ACTION_DESCRIPTIONS.values())


def test_event_sets() -> None:
    assert {e.value for e in LOCAL_EVENTS} == USER_PRIMITIVES
    assert {e.value for e in RECEIVED_PDU_EVENTS} == {
        "Evt3",
        "Evt4",
        "Evt6",
        "Evt10",
        "Evt12",
        "Evt13",
        "Evt16",
        "Evt19",
    }
    assert not LOCAL_EVENTS & RECEIVED_PDU_EVENTS


def test_every_pdu_type_has_its_received_event() -> None:
    assert set(EVENT_FOR_PDU_TYPE) == set(PDUType)
    assert {pdu_type: event.value for pdu_type, event in EVENT_FOR_PDU_TYPE.items()} == {
        PDUType.ASSOCIATE_RQ: "Evt6",
        PDUType.ASSOCIATE_AC: "Evt3",
        PDUType.ASSOCIATE_RJ: "Evt4",
        PDUType.P_DATA_TF: "Evt10",
        PDUType.RELEASE_RQ: "Evt12",
        PDUType.RELEASE_RP: "Evt13",
        PDUType.ABORT: "Evt16",
    }

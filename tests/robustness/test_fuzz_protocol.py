"""The SCP under thousands of hostile sessions: every layer of the protocol, mutated.

Quick mode runs in the normal suite (``AIODICOM_FUZZ_CASES``, default 5,000 cases, about
20 s on 2 cores); ``python tests/robustness/run_long.py --cases 100000`` is the long mode.
Reproduce one case with ``python tests/robustness/run_long.py --seed S --case N``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import tracemalloc
from pathlib import Path

import anyio
import pydicom
import pytest

import aiodicom
import fuzz_sessions
from aiodicom import SCPConfig, StoreSCP
from aiodicom.protocol.association import Association
from aiodicom.protocol.dimse import CEchoRQ, CStoreRQ, encode_command
from aiodicom.protocol.dimse_stream import encode_message
from aiodicom.protocol.pdu import (
    AssociateRQ,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PDataTF,
    PresentationContextRQ,
)
from aiodicom.protocol.pdu_codec import decode_pdu, encode_pdu
from aiodicom.protocol.pdu_reader import PDUReader
from aiodicom.scp_session import Session
from aiodicom.storage import IncomingFile
from aiodicom.transport import Connection
from fuzz_cases import generate_case
from fuzz_runner import CaseResult, Tally, fuzz, run_case, run_cases
from fuzz_sessions import (
    ABORT,
    CALLED_AE,
    CALLING_AE,
    CT_IMAGE_STORAGE,
    IMPLEMENTATION_UID,
    SERVER_MAX_PDU,
    STORE_CONTEXT,
    TEMPLATE_CONTEXTS,
    VALID,
    build_session,
    dataset,
    encode_command_elements,
    release_rq,
    store_command,
)
from robustness_helpers import leftover_temporary_files, running_scp, stored_files

pytestmark = pytest.mark.anyio

QUICK_CASES = int(os.environ.get("AIODICOM_FUZZ_CASES", "5000"))
QUICK_SEED = int(os.environ.get("AIODICOM_FUZZ_SEED", "20261127"))
# RSS may grow a little after the warm-up (allocator arenas, the log handler's buffers,
# a few hundred stored files' directory entries cached by pydicom-free code paths). A
# leak of one association's objects per case (a few KB: reader, assembler, session,
# stream, socket) would add >= 10 MiB over 5,000 cases, so 8 MiB separates the two.
RSS_BOUND = 8 * 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- The generator itself ----------------------------------------------------------------------


def test_templates_are_the_bytes_of_the_real_encoder() -> None:
    """The hand-built tree of an intact session equals encode_pdu/encode_message output."""
    rng = random.Random(1)
    session = build_session("store", "1.2.826.0.1.3680043.10.1337.0.0", rng)
    request = AssociateRQ(
        called_ae_title=CALLED_AE,
        calling_ae_title=CALLING_AE,
        presentation_contexts=tuple(
            PresentationContextRQ(context_id, abstract, tuple(syntaxes))
            for context_id, abstract, syntaxes in TEMPLATE_CONTEXTS
        ),
        user_items=(
            MaximumLength(16384),
            ImplementationClassUID(IMPLEMENTATION_UID),
            ImplementationVersionName("FUZZ_1"),
        ),
    )
    assert session.pdus[0].encode() == encode_pdu(request)
    ((uid, data_set),) = session.stores.items()
    command = encode_command(CStoreRQ(1, CT_IMAGE_STORAGE, uid))
    assert encode_command_elements(store_command(1, uid)) == command
    ours = b"".join(pdu.encode() for pdu in session.pdus[1:-1])
    theirs = encode_message(STORE_CONTEXT, command, data_set, SERVER_MAX_PDU)
    # The real encoder shares a PDU between command and data set, the template does not:
    # both must carry the same command and data set bytes in PDUs the server accepts.
    assert _reassemble(ours) == _reassemble(theirs) == (command, data_set)
    assert (
        session.pdus[-1].encode()
        == release_rq().encode()
        == bytes.fromhex("050000000004") + (b"\0" * 4)
    )
    assert encode_command_elements(fuzz_sessions.echo_command(7)) == encode_command(CEchoRQ(7))


def _reassemble(stream: bytes) -> tuple[bytes, bytes]:
    command, data_set = b"", b""
    while stream:
        length = int.from_bytes(stream[2:6], "big")
        assert length <= SERVER_MAX_PDU
        pdu = decode_pdu(stream[: 6 + length])
        stream = stream[6 + length :]
        assert isinstance(pdu, PDataTF)
        for value in pdu.values:
            assert value.context_id == STORE_CONTEXT
            if value.is_command:
                command += value.data
            else:
                data_set += value.data
    return command, data_set


def test_template_data_set_is_read_by_pydicom(tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.10.1337.0.1"
    path = tmp_path / "template.dcm"
    path.write_bytes(dataset(uid, payload=b"\1\2" * 50))
    parsed = pydicom.dcmread(path, force=True)
    assert parsed.SOPInstanceUID == uid
    assert parsed.PatientID == "FUZZ"
    assert len(parsed.PixelData) == 100


def test_cases_reproduce_from_seed_and_index() -> None:
    first = [generate_case(5, index) for index in range(300)]
    again = [generate_case(5, index) for index in range(300)]
    assert [case.data for case in first] == [case.data for case in again]
    assert [case.splits for case in first] == [case.splits for case in again]
    # Every layer is drawn within a few hundred cases.
    layers = {case.layer for case in first}
    assert layers >= {
        "valid",
        "pdu-header",
        "item",
        "ae-title",
        "context",
        "associate",
        "pdv",
        "command",
        "dataset",
        "random",
        "anchor",
    }


# --- Quick mode --------------------------------------------------------------------------------


async def test_fuzz_quick(tmp_path: Path) -> None:
    """QUICK_CASES hostile sessions against ``aiodicom storescp`` in a child process."""
    with anyio.fail_after(240):
        report = await fuzz(tmp_path, seed=QUICK_SEED, cases=QUICK_CASES)
    text = report.text()
    print(text)
    failures = report.failures(RSS_BOUND)
    assert not failures, text + "\n" + "\n".join(failures)
    tally = report.tally
    assert tally.cases == QUICK_CASES, text
    assert tally.crashes == 0 and tally.hangs == 0, text
    # Not a fuzz that only ever hits the first byte: every kind of answer shows up.
    for outcome in ("rj", "abort", "close", "valid"):
        assert tally.outcomes[outcome] > 0, text
    assert len(tally.successes) > QUICK_CASES // 20, text


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_fuzz_in_process_frees_every_association(tmp_path: Path) -> None:
    """In-process: after 1,500 cases no association object survives and memory is flat."""
    config = SCPConfig(
        max_pdu_length=SERVER_MAX_PDU,
        artim_timeout=1.0,
        dimse_timeout=1.0,
        idle_timeout=1.5,
        max_associations=1000,
    )
    tally = Tally(seed=QUICK_SEED + 1)
    logging.getLogger("aiodicom").setLevel(logging.CRITICAL)
    try:
        async with running_scp(tmp_path / "data", config=config) as scp:
            with anyio.fail_after(120):
                await run_cases(
                    scp.port, tally.seed, range(0, 300), tally, concurrency=16, case_timeout=5.0
                )
                await _wait_until_idle(scp)
                tracemalloc.start()
                try:
                    before = tracemalloc.take_snapshot()
                    await run_cases(
                        scp.port,
                        tally.seed,
                        range(300, 1500),
                        tally,
                        concurrency=16,
                        case_timeout=5.0,
                    )
                    live = await _wait_until_idle(scp)
                    after = tracemalloc.take_snapshot()
                finally:
                    tracemalloc.stop()
            # What the server's own code still holds (the test keeps every data set it
            # sent in the tally: allocations of fuzz_cases.py are not the server's).
            server_code = [tracemalloc.Filter(True, f"{aiodicom.__path__[0]}/*")]
            differences = after.filter_traces(server_code).compare_to(
                before.filter_traces(server_code), "lineno"
            )
            growth = sum(stat.size_diff for stat in differences)
            largest = "; ".join(str(stat) for stat in differences[:3])
            figures = (
                f"{tally.summary()}; live objects after the run {live}; "
                f"memory allocated by aiodicom and still held: {growth / 1024:+.0f} KiB "
                f"(largest: {largest}); "
                f"active associations {scp.stats.active_associations}"
            )
            print(figures)
            assert tally.crashes == 0 and tally.hangs == 0, figures
            assert all(count == 0 for count in live.values()), figures
            assert scp.stats.active_associations == 0, figures
            assert not scp._sessions, figures
            # 1,200 cases: a leak of even 500 bytes per case would show as 600 KB.
            assert growth < 512 * 1024, figures
    finally:
        logging.getLogger("aiodicom").setLevel(logging.NOTSET)
    assert leftover_temporary_files(tmp_path / "data") == []


_TRACKED = (Association, Connection, Session, IncomingFile, PDUReader)


def _live_objects() -> dict[str, int]:
    gc.collect()
    objects = gc.get_objects()
    return {kind.__name__: sum(isinstance(obj, kind) for obj in objects) for kind in _TRACKED}


async def _wait_until_idle(scp: StoreSCP) -> dict[str, int]:
    """Poll until no connection object is alive (the caller bounds the wait).

    Connections the server rejected or aborted close when we do or when their ARTIM
    (1 s here) expires, so this takes up to about a second.
    """
    live = _live_objects()
    while any(live.values()) or scp.stats.active_associations or scp._sessions:
        await anyio.sleep(0.1)
        live = _live_objects()
    return live


# --- Bugs the fuzz found (strict xfail: they fail today; fixing src/ makes them pass) -------------


def _pipelined_echo_session() -> bytes:
    session = build_session("echo", "1.2.826.0.1.3680043.10.1337.0.2", random.Random(2))
    return session.encode()


async def test_bug_pipelined_request_is_served_like_dcmtk_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    case = fuzz_sessions.Case(0, 0, "pipelined", "echo", _pipelined_echo_session())
    caplog.set_level(logging.WARNING, logger="aiodicom")
    with anyio.fail_after(30):
        async with running_scp(tmp_path) as scp:
            result = await run_case(scp.port, case, 10.0)
    assert result.outcome == VALID, result
    assert result.statuses == [("echo", 0)], result
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


def _store_then_broken_pdu(uid: str) -> tuple[bytes, bytes, bytes]:
    rq = build_session("associate", uid, random.Random(3)).pdus[0].encode()
    data_set = dataset(uid, payload=b"\x11\x22" * 100)
    command = encode_command_elements(store_command(1, uid))
    message = b"".join(
        pdu.encode() for pdu in fuzz_sessions.message_pdus(STORE_CONTEXT, command, data_set)
    )
    # An A-RELEASE-RQ whose PDU-length is 5: PS3.8 9.3.6 fixes it at 4, so the reader
    # aborts (invalid PDU parameter value) - in the same read as the data set's end.
    broken = b"\x05\x00\x00\x00\x00\x05" + b"\0" * 5
    return rq, message + broken, data_set


async def test_bug_no_store_is_committed_after_the_association_is_aborted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = "1.2.826.0.1.3680043.10.1337.0.3"
    rq, rest, _ = _store_then_broken_pdu(uid)
    case = fuzz_sessions.Case(0, 0, "commit-after-abort", "store", rq + rest, rq_end=len(rq))
    caplog.set_level(logging.WARNING, logger="aiodicom")
    data_dir = tmp_path / "incoming"
    with anyio.fail_after(30):
        async with running_scp(data_dir) as scp:
            result: CaseResult = await run_case(scp.port, case, 10.0)
        # The server has stopped: whatever it was doing with the data set is done.
    assert result.outcome == ABORT, result
    assert result.statuses == [], result
    assert leftover_temporary_files(data_dir) == []
    # The peer was told the association is gone and got no C-STORE-RSP: nothing stored.
    assert stored_files(data_dir) == []
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


async def test_bug_protocol_version_rejection_is_sent_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rq = build_session("associate", "1.2.826.0.1.3680043.10.1337.0.4", random.Random(4)).pdus[0]
    rq.prefix = (0).to_bytes(2, "big") + rq.prefix[2:]  # protocol-version 0: no bit 0
    caplog.set_level(logging.WARNING, logger="aiodicom")
    config = SCPConfig(artim_timeout=3.0)
    with anyio.fail_after(20):
        async with running_scp(tmp_path, config=config) as scp:
            stream = await anyio.connect_tcp("127.0.0.1", scp.port)
            async with stream:
                await stream.send(rq.encode())
                started = anyio.current_time()
                answer = await stream.receive()
                waited = anyio.current_time() - started
                # PS3.8 9.3.4: permanent, ACSE, protocol-version not supported.
                assert answer[:6] == b"\x03\x00\x00\x00\x00\x04" and answer[7:10] == b"\1\2\2"
                # Like every other answer, it leaves at once, not when ARTIM (3 s) ends.
                assert waited < 1.0, f"A-ASSOCIATE-RJ after {waited:.2f} s"
                # Bytes the peer had already sent (an A-RELEASE-RQ) arrive after the RJ.
                await stream.send(release_rq().encode())
                # Sta13 ignores them (AA-6) and closes at ARTIM, or when we close.
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    while await stream.receive():
                        pass
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]

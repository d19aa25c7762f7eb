"""Running fuzz cases against a live SCP over loopback, and judging what comes back.

Each case gets a fresh TCP connection: its bytes are written (in the writes the case
asks for) while a reader takes the server's PDUs apart with ``decode_pdu``. The reader
stops at the first A-ASSOCIATE-RJ, A-ABORT or A-RELEASE-RP, or when the server closes;
the whole case is bounded by ``case_timeout`` and running out of it is a *hang*.
Everything the server sends must decode; a well-formed answer that the case does not
allow (an A-ASSOCIATE-AC where the standard says reject, a failure status for an intact
store...) is a *problem* too. Used by ``test_fuzz_protocol.py`` and ``run_long.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute, SocketStream

from aiodicom.client import associate
from aiodicom.protocol.dimse import CEchoRSP, CStoreRSP, OtherCommand, decode_command
from aiodicom.protocol.errors import ProtocolError
from aiodicom.protocol.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    PDataTF,
    ReleaseRP,
)
from aiodicom.protocol.pdu_codec import decode_pdu
from fuzz_cases import generate_case
from fuzz_sessions import (
    ABORT,
    CLOSE,
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    RJ,
    SUCCESS,
    UID_ROOT,
    VALID,
    Case,
)
from robustness_helpers import (
    LOOPBACK,
    ScpProcess,
    leftover_temporary_files,
    make_source_files,
    parses_fully,
    split_part10,
    stored_files,
)

HANG = "hang"
CRASH = "crash"
BAD = "bad-answer"
_READ_SIZE = 65536


@dataclass
class CaseResult:
    outcome: str
    statuses: list[tuple[str, int]] = field(default_factory=list)  # (kind, status)
    stored: list[str] = field(default_factory=list)  # UIDs answered with success
    reject: tuple[int, int, int] | None = None
    abort: tuple[int, int] | None = None
    detail: str = ""
    local_port: int = 0  # ours: the server's log names its peers by it


async def _send(stream: SocketStream, case: Case, answered: anyio.Event) -> None:
    data = memoryview(case.data)
    cuts = sorted({*case.splits, case.rq_end, len(data)} - {0})
    start = 0
    try:
        for cut in cuts:
            if cut > start:
                await stream.send(data[start:cut])
                start = cut
            if cut == case.rq_end:
                # A requestor sends nothing more before the A-ASSOCIATE-AC (PS3.8 Sta5).
                await answered.wait()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the server closed on us: what it said before that is the answer


async def _read_answers(stream: SocketStream, result: CaseResult, answered: anyio.Event) -> None:
    try:
        await _read_pdus(stream, result, answered)
    finally:
        answered.set()


async def _read_pdus(stream: SocketStream, result: CaseResult, answered: anyio.Event) -> None:
    buffer = bytearray()
    associated = False
    seen: list[str] = []
    command_parts: dict[int, bytearray] = {}
    while True:
        try:
            chunk = await stream.receive(_READ_SIZE)
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ) as error:
            result.outcome = CLOSE
            result.detail = f"after {seen} ({type(error).__name__})"
            if buffer:
                result.outcome = BAD
                result.detail = f"closed with {len(buffer)} bytes of a partial PDU"
            return
        buffer += chunk
        while len(buffer) >= 6:
            length = int.from_bytes(buffer[2:6], "big")
            if len(buffer) < 6 + length:
                break
            raw = bytes(buffer[: 6 + length])
            del buffer[: 6 + length]
            try:
                pdu = decode_pdu(raw)
            except ProtocolError as error:
                result.outcome, result.detail = BAD, f"undecodable PDU {raw[:32]!r}: {error}"
                return
            seen.append(type(pdu).__name__)
            if isinstance(pdu, AssociateRJ):
                result.outcome = RJ if not associated else BAD
                result.reject = (pdu.result, pdu.source, pdu.reason)
                return
            if isinstance(pdu, Abort):
                result.outcome = ABORT
                result.abort = (pdu.source, pdu.reason)
                return
            if isinstance(pdu, AssociateAC) and not associated:
                associated = True
                answered.set()
            elif isinstance(pdu, ReleaseRP) and associated:
                result.outcome = VALID
                return
            elif isinstance(pdu, PDataTF) and associated:
                for value in pdu.values:
                    if not value.is_command:
                        result.outcome, result.detail = BAD, "the server sent a data set"
                        return
                    part = command_parts.setdefault(value.context_id, bytearray())
                    part += value.data
                    if value.is_last:
                        del command_parts[value.context_id]
                        try:
                            command = decode_command(bytes(part))
                        except ProtocolError as error:
                            result.outcome, result.detail = BAD, f"bad response: {error}"
                            return
                        _record(result, command)
            else:
                result.outcome, result.detail = BAD, f"unexpected {type(pdu).__name__}"
                return


def _record(result: CaseResult, command: object) -> None:
    if isinstance(command, CStoreRSP):
        result.statuses.append(("store", command.status))
        if command.status == SUCCESS and command.affected_sop_instance_uid:
            result.stored.append(command.affected_sop_instance_uid)
    elif isinstance(command, CEchoRSP):
        result.statuses.append(("echo", command.status))
    elif isinstance(command, OtherCommand):
        raw = command.elements.get(0x0900, b"")
        status = int.from_bytes(raw[:2], "little") if len(raw) >= 2 else -1
        result.statuses.append((f"0x{command.command_field:04X}", status))
    else:
        result.statuses.append((type(command).__name__, -1))


async def run_case(port: int, case: Case, case_timeout: float) -> CaseResult:
    result = CaseResult(HANG)
    with anyio.move_on_after(case_timeout):
        try:
            stream = await anyio.connect_tcp(LOOPBACK, port)
        except OSError as error:
            return CaseResult(CRASH, detail=f"cannot connect: {error}")
        async with stream:
            result.local_port = int(stream.extra(SocketAttribute.local_port))
            answered = anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(_send, stream, case, answered)
                await _read_answers(stream, result, answered)
                group.cancel_scope.cancel()
    return result


def judge(case: Case, result: CaseResult) -> list[str]:
    """What is wrong with the server's answer to ``case`` (empty: nothing)."""
    if result.outcome in (HANG, CRASH, BAD):
        return [f"{result.outcome}: {result.detail}".rstrip(": ")]
    problems = []
    if result.outcome not in case.expect:
        problems.append(
            f"answered {result.outcome} {result.reject or result.abort or ''} "
            f"{result.detail}, expected one of {sorted(case.expect)}"
        )
    rejects = case.expect_reject
    if rejects is not None and result.reject is not None and result.reject not in rejects:
        problems.append(f"A-ASSOCIATE-RJ {result.reject}, expected {sorted(rejects)}")
    if case.expect_status is not None:
        wrong = [
            (kind, status) for kind, status in result.statuses if status not in case.expect_status
        ]
        if wrong:
            shown = ", ".join(f"{kind} 0x{status:04X}" for kind, status in wrong)
            problems.append(f"statuses {shown} not in the expected set")
    return problems


@dataclass
class Tally:
    """Counts of a fuzz run, and what must be on disk afterwards."""

    seed: int
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    layers: Counter[str] = field(default_factory=Counter)
    # (our port, "[case] what is wrong") of every case with a problem (the first 10,000).
    problems: list[tuple[int, str]] = field(default_factory=list)
    problem_count: int = 0
    # UID -> exact data set bytes, or None when the bytes are not known in advance.
    successes: dict[str, bytes | None] = field(default_factory=dict)
    # Outcome of every case that sent a store (to explain files without a response).
    case_outcomes: dict[int, str] = field(default_factory=dict)
    health_checks: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, case: Case, result: CaseResult) -> None:
        self.cases += 1
        self.layers[case.layer] += 1
        self.outcomes[result.outcome] += 1
        for _, status in result.statuses:
            self.statuses[status] += 1
        for uid in result.stored:
            self.successes[uid] = case.exact_stores.get(uid)
        self.case_outcomes[case.index] = result.outcome
        problems = judge(case, result)
        if problems:
            self.problem_count += 1
            if len(self.problems) < 10_000:
                self.problems.append((result.local_port, f"[{case.label}] " + "; ".join(problems)))

    @property
    def hangs(self) -> int:
        return self.outcomes[HANG]

    @property
    def crashes(self) -> int:
        return self.outcomes[CRASH]

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.cases / elapsed if elapsed else 0.0
        return (
            f"fuzz seed={self.seed}: {self.cases} cases in {elapsed:.1f} s ({rate:.0f}/s); "
            f"answered by A-ASSOCIATE-RJ {self.outcomes[RJ]}, by A-ABORT {self.outcomes[ABORT]}, "
            f"by close {self.outcomes[CLOSE]}, valid sessions {self.outcomes[VALID]}; "
            f"crashes {self.crashes}, hangs {self.hangs}, bad answers {self.outcomes[BAD]}, "
            f"cases judged wrong {self.problem_count}; "
            f"stores acknowledged {len(self.successes)}; health checks {self.health_checks}"
        )


async def run_cases(
    port: int, seed: int, indices: range, tally: Tally, *, concurrency: int, case_timeout: float
) -> None:
    """Run cases ``indices`` with up to ``concurrency`` connections at once."""
    iterator = iter(indices)

    async def worker() -> None:
        for index in iterator:
            case = generate_case(seed, index)
            result = await run_case(port, case, case_timeout)
            tally.add(case, result)

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)


async def health_check(port: int, scratch: Path, tally: Tally, number: int) -> None:
    """A normal association still works: C-ECHO and a C-STORE with aiodicom's own SCU."""
    source = make_source_files(scratch, 1, tag=f"{tally.seed % 100000}.{number}")[0]
    with anyio.fail_after(20):
        async with associate(
            LOOPBACK,
            port,
            called_ae="AIODICOM",
            contexts=[
                ("1.2.840.10008.1.1", [EXPLICIT_VR_LE]),
                (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
            ],
        ) as association:
            assert await association.echo() == SUCCESS
            stored = await association.store(source.path)
    assert stored.status == SUCCESS, stored
    tally.successes[source.sop_instance_uid] = source.dataset
    tally.health_checks += 1
    source.path.unlink()


def case_index_of(uid: str, seed: int) -> int | None:
    """The case that built SOP Instance UID ``uid`` (fuzz_cases: ``ROOT.seed.index.n``)."""
    prefix = f"{UID_ROOT}.{seed % 100000}."
    if not uid.startswith(prefix):
        return None
    head = uid[len(prefix) :].split(".", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass
class DiskCheck:
    problems: list[str]
    # Files of stores that got no response because the server had already sent an
    # A-ABORT or closed (the signature of KNOWN_BUGS["commit-after-abort"]).
    committed_without_response: list[str]
    unparsable: int  # stored files pydicom cannot read whole (bit-preserving storage)
    files: int
    lost: int  # acknowledged with success but not on disk


def check_disk(data_dir: Path, tally: Tally) -> DiskCheck:
    """Exactly the acknowledged stores are on disk, byte for byte where known; no temp file."""
    problems = []
    on_disk = {path.name.removesuffix(".dcm"): path for path in stored_files(data_dir)}
    lost = sorted(set(tally.successes) - set(on_disk))
    if lost:
        problems.append(f"{len(lost)} acknowledged stores missing on disk, e.g. {lost[:3]}")
    committed_without_response = []
    for uid in sorted(set(on_disk) - set(tally.successes)):
        index = case_index_of(uid, tally.seed)
        if index is not None and tally.case_outcomes.get(index) in (ABORT, CLOSE):
            committed_without_response.append(uid)
        else:
            problems.append(f"file {uid} was never acknowledged (case {index})")
    corrupt = [
        uid
        for uid, expected in tally.successes.items()
        if expected is not None
        and uid in on_disk
        and split_part10(on_disk[uid].read_bytes())[1] != expected
    ]
    if corrupt:
        problems.append(f"{len(corrupt)} stored files differ from what was sent: {corrupt[:3]}")
    leftovers = leftover_temporary_files(data_dir)
    if leftovers:
        problems.append(f"{len(leftovers)} temporary files left: {leftovers[:3]}")
    unparsable = sum(not parses_fully(path) for path in on_disk.values())
    return DiskCheck(problems, committed_without_response, unparsable, len(on_disk), len(lost))


def outside_files(root: Path, data_dir: Path, allowed: set[Path]) -> list[Path]:
    """Files under ``root`` that are neither in ``data_dir`` nor ``allowed`` (traversal)."""
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and path not in allowed and not path.is_relative_to(data_dir)
    ]


async def wait_for_sockets(server: ScpProcess, target: int, timeout: float) -> int:
    """Poll until the server holds ``target`` sockets (its connections closed); bounded."""
    count = server.socket_count()
    with anyio.move_on_after(timeout):
        while count > target:
            await anyio.sleep(0.05)
            count = server.socket_count()
    return count


# Bugs in src/ that the fuzz meets (each pinned by a strict xfail test in
# test_fuzz_protocol.py). Their log signature is counted and reported instead of failing
# the run; remove an entry once its bug is fixed.
KNOWN_BUGS: dict[str, tuple[str, ...]] = {}


def known_bug(exception_line: str) -> str | None:
    return next(
        (name for name, parts in KNOWN_BUGS.items() if all(p in exception_line for p in parts)),
        None,
    )


@dataclass
class FuzzReport:
    tally: Tally
    rss_baseline: int
    rss_after: int
    rss_peak: int
    fd_baseline: int
    fd_after: int
    internal_errors: list[tuple[int | None, str]]
    disk: DiskCheck
    server_alive: bool

    def known_bug_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KNOWN_BUGS, 0)
        for _, line in self.internal_errors:
            name = known_bug(line)
            if name is not None:
                counts[name] += 1
        return counts

    def unknown_internal_errors(self) -> list[str]:
        return [line for _, line in self.internal_errors if known_bug(line) is None]

    def _known_bug_ports(self) -> set[int]:
        return {port for port, line in self.internal_errors if port and known_bug(line)}

    def unexplained_problems(self) -> list[str]:
        """Judged-wrong cases, except those whose connection hit a known bug."""
        ports = self._known_bug_ports()
        return [text for port, text in self.tally.problems if port not in ports]

    def explained_problems(self) -> list[str]:
        """Judged-wrong cases whose connection hit a known bug (their consequence)."""
        ports = self._known_bug_ports()
        return [text for port, text in self.tally.problems if port in ports]

    def text(self) -> str:
        known = ", ".join(f"{name} {count}" for name, count in self.known_bug_counts().items())
        return (
            f"{self.tally.summary()}\n"
            f"server RSS {self.rss_baseline / 2**20:.1f} MiB after warm-up, "
            f"{self.rss_after / 2**20:.1f} MiB after the run "
            f"(delta {(self.rss_after - self.rss_baseline) / 2**20:+.1f} MiB, "
            f"peak seen {self.rss_peak / 2**20:.1f} MiB); "
            f"open fds {self.fd_baseline} after warm-up, {self.fd_after} after the run; "
            f"files on disk {self.disk.files}, acknowledged but lost {self.disk.lost}, "
            f"stored without a response {len(self.disk.committed_without_response)}, "
            f"stored but not parsable by pydicom {self.disk.unparsable}; "
            f"unexpected server errors: {len(self.unknown_internal_errors())} unknown, "
            f"known bugs: {known} (wrong answers they caused: "
            f"{len(self.explained_problems())}); server alive {self.server_alive}"
        )

    def failures(self, rss_bound: int) -> list[str]:
        failures = self.unexplained_problems()[:20]
        if self.tally.crashes or self.tally.hangs or not self.server_alive:
            failures.append(
                f"crashes {self.tally.crashes}, hangs {self.tally.hangs}, "
                f"server alive {self.server_alive}"
            )
        failures += self.disk.problems
        failures += self.unknown_internal_errors()[:5]
        if self.fd_after != self.fd_baseline:
            failures.append(f"descriptors: {self.fd_after} open, {self.fd_baseline} after warm-up")
        if self.rss_after - self.rss_baseline > rss_bound:
            failures.append(f"RSS grew by {(self.rss_after - self.rss_baseline) / 2**20:.1f} MiB")
        return failures


SERVER_ARGS = [
    "-pdu",
    "16384",  # fuzz_sessions.SERVER_MAX_PDU
    "-ta",
    "1",
    "-td",
    "1",
    "--idle-timeout",
    "1.5",
    "--max-associations",
    "1000",
]


async def fuzz(
    workdir: Path,
    *,
    seed: int,
    cases: int,
    concurrency: int = 24,
    case_timeout: float = 5.0,
    batch: int = 1000,
    warmup: int = 300,
    progress: bool = False,
) -> FuzzReport:
    """Start ``aiodicom storescp`` in a child process and run ``cases`` cases against it.

    After every batch of cases the process must be alive and a normal C-ECHO and C-STORE
    must succeed. Memory and descriptors are measured after the first ``warmup`` cases
    (imports, caches, worker threads and the files they open once) and at the end,
    each time once the server has closed every connection.
    """
    data_dir = workdir / "data"
    scratch = workdir / "scratch"
    log_path = workdir / "server.log"
    server = ScpProcess(data_dir, log_path, SERVER_ARGS)
    tally = Tally(seed)
    port = server.start()
    try:
        idle_sockets = server.socket_count()
        done = 0
        rss_baseline = rss_peak = fd_baseline = 0
        checks = 0
        while done < cases:
            size = min(cases - done, warmup if done == 0 and warmup else batch)
            await run_cases(
                port,
                seed,
                range(done, done + size),
                tally,
                concurrency=concurrency,
                case_timeout=case_timeout,
            )
            done += size
            if not server.alive():
                break
            await health_check(port, scratch, tally, checks)
            checks += 1
            rss_peak = max(rss_peak, server.rss_bytes())
            if checks == 1:
                await wait_for_sockets(server, idle_sockets, 10.0)
                rss_baseline, fd_baseline = server.rss_bytes(), server.fd_count()
            if progress:
                print(tally.summary(), flush=True)
        alive = server.alive()
        fd_after = rss_after = -1
        if alive:
            await wait_for_sockets(server, idle_sockets, 10.0)
            fd_after, rss_after = server.fd_count(), server.rss_bytes()
        disk = check_disk(data_dir, tally)
        stray = outside_files(workdir, data_dir, {log_path})
        if stray:
            disk.problems.append(f"files outside the data directory: {stray[:3]}")
    finally:
        if server.alive():
            server.stop()
        else:
            server.kill()
    return FuzzReport(
        tally=tally,
        rss_baseline=rss_baseline,
        rss_after=rss_after,
        rss_peak=rss_peak,
        fd_baseline=fd_baseline,
        fd_after=fd_after,
        internal_errors=server.internal_errors(),
        disk=disk,
        server_alive=alive,
    )

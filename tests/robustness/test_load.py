"""The SCP under load: many associations at once, many one after the other, idle and
stalled connections beside real traffic, and more associations than it allows.

The server is ``aiodicom storescp`` in a child process, so that its memory (RSS) and
descriptors are its own. Every store acknowledged with success is checked byte for byte
against its source. ``AIODICOM_LOAD_LONG=1`` multiplies the counts (on demand).
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiodicom.client import AssociationRejectedError, associate, store_files
from fuzz_sessions import CT_IMAGE_STORAGE, EXPLICIT_VR_LE, VERIFICATION, build_session
from robustness_helpers import (
    LOOPBACK,
    ScpProcess,
    SourceFile,
    leftover_temporary_files,
    make_source_files,
    stored_dataset_bytes,
    stored_files,
)

pytestmark = pytest.mark.anyio

LONG = os.environ.get("AIODICOM_LOAD_LONG") == "1"
SCALE = 10 if LONG else 1
CONTEXTS = [(VERIFICATION, [EXPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])]
MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def verify_stored(data_dir: Path, sources: list[SourceFile], acknowledged: set[str]) -> str:
    """Every acknowledged store on disk with its source's bytes; returns a problem or ""."""
    on_disk = {path.stem: path for path in stored_files(data_dir)}
    by_uid = {source.sop_instance_uid: source for source in sources}
    lost = [uid for uid in acknowledged if uid not in on_disk]
    corrupt = [
        uid
        for uid in acknowledged
        if uid in on_disk and stored_dataset_bytes(on_disk[uid]) != by_uid[uid].dataset
    ]
    extra = set(on_disk) - acknowledged
    temp = leftover_temporary_files(data_dir)
    if lost or corrupt or extra or temp:
        return f"lost {len(lost)}, corrupt {len(corrupt)}, unacknowledged {len(extra)}, temp {temp}"
    return ""


class RssSampler:
    """The server's RSS every 50 ms while a block runs (for the peak)."""

    def __init__(self, server: ScpProcess) -> None:
        self.server = server
        self.peak = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.peak = max(self.peak, self.server.rss_bytes())
            await anyio.sleep(0.05)


async def settle(server: ScpProcess, sockets: int, timeout: float = 10.0) -> None:
    """Until the server has closed every connection (its socket count is back)."""
    with anyio.fail_after(timeout):
        while server.socket_count() > sockets:
            await anyio.sleep(0.05)


async def measured(server: ScpProcess, work: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    sampler = RssSampler(server)
    async with anyio.create_task_group() as group:
        await group.start(sampler.run)
        result = await work()
        group.cancel_scope.cancel()
    return result, sampler.peak


@pytest.fixture
def server(tmp_path: Path) -> Any:
    process = ScpProcess(
        tmp_path / "incoming",
        tmp_path / "server.log",
        ["--max-associations", "100", "-ta", "1", "-td", "2", "--idle-timeout", "2"],
    )
    process.start()
    yield process
    if process.alive():
        process.stop()
    assert process.internal_errors() == []


async def _warm_up(server: ScpProcess, folder: Path) -> list[SourceFile]:
    """A few stores so that imports, caches and worker threads exist before measuring."""
    sources = make_source_files(folder, 40, tag="60")
    results = await store_files(LOOPBACK, server.port, [s.path for s in sources], associations=8)
    assert all(result.status == 0 for result in results)
    return sources


async def test_64_concurrent_associations_of_100_stores(tmp_path: Path, server: Any) -> None:
    count = 64 * 100 * SCALE
    sources = make_source_files(tmp_path / "source", count, tag="61", payload_size=2048)
    warm = await _warm_up(server, tmp_path / "warm")
    sockets = server.idle_sockets
    await settle(server, sockets)  # the warm-up's connections closed
    rss_before, fds_before = server.rss_bytes(), server.fd_count()
    started = anyio.current_time()

    async def send() -> list[Any]:
        with anyio.fail_after(120 * SCALE):
            return await store_files(
                LOOPBACK, server.port, [s.path for s in sources], associations=64
            )

    results, peak = await measured(server, send)
    elapsed = anyio.current_time() - started
    await settle(server, sockets)
    rss_after, fds_after = server.rss_bytes(), server.fd_count()
    acknowledged = {r.sop_instance_uid for r in results if r.status == 0}
    stored = len(acknowledged)
    acknowledged |= {source.sop_instance_uid for source in warm}
    problem = verify_stored(server.data_dir, sources + warm, acknowledged)
    figures = (
        f"64 associations x {count // 64} stores: {stored}/{count} acknowledged in "
        f"{elapsed:.1f} s ({count / elapsed:.0f} files/s); server RSS {rss_before / MIB:.1f} -> "
        f"peak {peak / MIB:.1f} -> {rss_after / MIB:.1f} MiB; fds {fds_before} -> {fds_after}"
    )
    print(figures)
    assert stored == count, figures
    assert not problem, f"{figures}; {problem}"
    assert fds_after == fds_before, figures
    # 64 associations at once cost at most a few MiB each (256 KiB read buffers, the
    # reader, a writer's batch); afterwards Python keeps some of its arenas. 24 MiB bounds
    # the growth; a leak of 4 KiB per store would alone exceed it at 6,400 stores.
    assert rss_after - rss_before < 24 * MIB, figures


async def test_1000_sequential_associations(tmp_path: Path, server: Any) -> None:
    count = 1000 * SCALE
    sources = make_source_files(tmp_path / "source", count, tag="62", payload_size=1024)
    warm = await _warm_up(server, tmp_path / "warm")
    sockets = server.idle_sockets
    await settle(server, sockets)  # the warm-up's connections closed
    acknowledged: set[str] = set()
    rss_samples: list[int] = []
    started = anyio.current_time()
    with anyio.fail_after(120 * SCALE):
        for number, source in enumerate(sources):
            async with associate(LOOPBACK, server.port, contexts=CONTEXTS) as association:
                assert await association.echo() == 0
                result = await association.store(source.path)
            if result.status == 0:
                acknowledged.add(source.sop_instance_uid)
            if number % 100 == 99:
                rss_samples.append(server.rss_bytes())
    elapsed = anyio.current_time() - started
    await settle(server, sockets)
    stored = len(acknowledged)
    acknowledged |= {source.sop_instance_uid for source in warm}
    problem = verify_stored(server.data_dir, sources + warm, acknowledged)
    growth = rss_samples[-1] - rss_samples[0]
    figures = (
        f"{count} sequential associations (echo + store): {stored} stored in "
        f"{elapsed:.1f} s ({count / elapsed:.0f} associations/s); server RSS every 100: "
        f"{[round(sample / MIB, 1) for sample in rss_samples]} MiB"
    )
    print(figures)
    assert stored == count, figures
    assert not problem, f"{figures}; {problem}"
    # Flat: from the 100th to the last association RSS moves by allocator noise only;
    # one leaked association (~10 KiB of objects) per round would add ~9 MiB.
    assert growth < 4 * MIB, figures


async def test_association_limit_rejects_the_excess_with_2_3_2(tmp_path: Path) -> None:
    limit, offered = 16, 40
    server = ScpProcess(
        tmp_path / "incoming", tmp_path / "server.log", ["--max-associations", str(limit)]
    )
    server.start()
    sources = make_source_files(tmp_path / "source", offered * 5, tag="63")
    accepted: list[int] = []
    rejected: list[tuple[int, int, int]] = []
    acknowledged: set[str] = set()
    everyone_in = anyio.Event()
    answered = 0

    async def one(number: int) -> None:
        nonlocal answered
        mine = sources[number * 5 : number * 5 + 5]
        try:
            async with associate(LOOPBACK, server.port, contexts=CONTEXTS) as association:
                accepted.append(number)
                answered += 1
                if answered == offered:
                    everyone_in.set()
                # Hold the association until every one of the 40 has been answered.
                await everyone_in.wait()
                for source in mine:
                    if (await association.store(source.path)).status == 0:
                        acknowledged.add(source.sop_instance_uid)
        except AssociationRejectedError as error:
            rejected.append((error.result, error.source, error.reason))
            answered += 1
            if answered == offered:
                everyone_in.set()

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for number in range(offered):
                    group.start_soon(one, number)
        problem = verify_stored(server.data_dir, sources, acknowledged)
        figures = (
            f"{offered} associations offered at once, limit {limit}: {len(accepted)} accepted, "
            f"{len(rejected)} rejected with {sorted(set(rejected))}; "
            f"{len(acknowledged)} stores acknowledged"
        )
        print(figures)
        assert len(accepted) == limit, figures
        assert rejected == [(2, 3, 2)] * (offered - limit), figures
        assert len(acknowledged) == 5 * limit, figures
        assert not problem, f"{figures}; {problem}"
    finally:
        server.stop()
    assert server.internal_errors() == []


async def test_slow_loris_beside_real_traffic(tmp_path: Path, server: Any) -> None:
    """Silent, trickling, idle and stalled connections are closed by the timeouts (ARTIM
    1 s, idle 2 s, DIMSE 2 s) while real associations store as usual."""
    per_kind = 13 * SCALE  # about 50 connections of four kinds
    sources = make_source_files(tmp_path / "source", 400, tag="64")
    warm = await _warm_up(server, tmp_path / "warm")
    sockets = server.idle_sockets
    await settle(server, sockets)  # the warm-up's connections closed
    fds_before = server.fd_count()
    rq = (
        build_session("associate", "1.2.826.0.1.3680043.10.1337.64", random.Random(64))
        .pdus[0]
        .encode()
    )
    closed_after: dict[str, list[float]] = {
        kind: [] for kind in ("silent", "trickle", "idle", "stalled")
    }

    async def loris(kind: str) -> None:
        stream = await anyio.connect_tcp(LOOPBACK, server.port)
        started = anyio.current_time()
        async with stream:
            if kind in ("idle", "stalled"):
                await stream.send(rq)
                assert (await stream.receive())[0] == 0x02  # A-ASSOCIATE-AC
                started = anyio.current_time()
            if kind == "stalled":
                # A P-DATA-TF header announcing 1000 bytes, and 10 of them.
                await stream.send(
                    b"\x04\x00\x00\x00\x03\xe8" + b"\x00\x00\x03\xe4\x03\x03" + b"1234"
                )
            if kind == "trickle":
                # The A-ASSOCIATE-RQ one byte every 100 ms: ARTIM runs from the connect.
                for byte in rq:
                    try:
                        await stream.send(bytes([byte]))
                    except (anyio.BrokenResourceError, OSError):
                        break
                    with anyio.move_on_after(0.1):
                        if await _closed(stream):
                            break
            else:
                await _closed(stream)
        closed_after[kind].append(anyio.current_time() - started)

    started = anyio.current_time()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for kind in closed_after:
                for _ in range(per_kind):
                    group.start_soon(loris, kind)
            results = await store_files(
                LOOPBACK, server.port, [s.path for s in sources], associations=8
            )
    elapsed = anyio.current_time() - started
    await settle(server, sockets)
    fds_after = server.fd_count()
    acknowledged = {r.sop_instance_uid for r in results if r.status == 0}
    stored = len(acknowledged)
    acknowledged |= {source.sop_instance_uid for source in warm}
    problem = verify_stored(server.data_dir, sources + warm, acknowledged)
    worst = {kind: round(max(times), 2) for kind, times in closed_after.items()}
    figures = (
        f"slow loris: {4 * per_kind} idle/stalled connections beside 8 associations storing "
        f"{len(sources)} files: {stored} stored, all done in {elapsed:.1f} s; "
        f"slowest close per kind (s) {worst}; fds {fds_before} -> {fds_after}"
    )
    print(figures)
    assert stored == len(sources), figures
    assert not problem, f"{figures}; {problem}"
    assert all(len(times) == per_kind for times in closed_after.values()), figures
    # ARTIM (1 s) for silent and trickling peers; idle and DIMSE timeouts (2 s) for the
    # others; a loaded 2-core machine may add a second.
    assert worst["silent"] < 3 and worst["trickle"] < 3, figures
    assert worst["idle"] < 4.5 and worst["stalled"] < 4.5, figures
    assert fds_after == fds_before, figures


async def _closed(stream: Any) -> bool:
    """Read until the server closes (True); whatever it sends on the way is dropped."""
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        return True

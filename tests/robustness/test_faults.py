"""Faults around the SCP: peers that vanish, a full or unwritable disk, SIGKILL under load,
callbacks that raise, hang or crawl.

What every test checks afterwards: no partial file at a final name, no temporary file,
the server still serves, and descriptors back to where they were. Figures (time to
recover, restart time, descriptor counts) are printed and put in assertion messages.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiodicom import SCPConfig, StoredInstance
from aiodicom.client import associate, store_files
from aiodicom.storage.writer import STATUS_OUT_OF_RESOURCES, TEMP_DIR_NAME
from fuzz_sessions import (
    CT_IMAGE_STORAGE,
    EXPLICIT_VR_LE,
    STORE_CONTEXT,
    VERIFICATION,
    build_session,
    dataset,
    encode_command_elements,
    message_pdus,
    release_rq,
    store_command,
)
from robustness_helpers import (
    LOOPBACK,
    ScpProcess,
    leftover_temporary_files,
    make_source_files,
    parses_fully,
    running_scp,
    split_part10,
    stored_dataset_bytes,
    stored_files,
)

pytestmark = pytest.mark.anyio

CONTEXTS = [(VERIFICATION, [EXPLICIT_VR_LE]), (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def wait_until(condition: Any, what: str, timeout: float = 10.0) -> float:
    """Poll ``condition()`` until true; returns the seconds it took (bounded)."""
    started = anyio.current_time()
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.02)
    assert condition(), f"{what}: not within {timeout} s"
    return anyio.current_time() - started


async def echo_and_store_work(port: int, folder: Path, tag: str) -> float:
    """A fresh association stores a file; returns how long the store took."""
    source = make_source_files(folder, 1, tag=tag)[0]
    with anyio.fail_after(20):
        async with associate(LOOPBACK, port, contexts=CONTEXTS) as association:
            assert await association.echo() == 0
            started = anyio.current_time()
            result = await association.store(source.path)
    assert result.status == 0, result
    return anyio.current_time() - started


# --- The peer disappears ----------------------------------------------------------------------


def _store_session(uid: str, payload: int) -> tuple[bytes, bytes]:
    """(A-ASSOCIATE-RQ, the C-STORE message) with a data set of about ``payload`` bytes."""
    rq = build_session("associate", uid, random.Random(0)).pdus[0].encode()
    data = dataset(uid, payload=bytes(range(256)) * (payload // 256))
    command = encode_command_elements(store_command(1, uid))
    return rq, b"".join(p.encode() for p in message_pdus(STORE_CONTEXT, command, data))


def _cut(message: bytes, where: str) -> bytes:
    """The bytes a peer sent before vanishing."""
    boundary = 0  # the first PDU boundary past the middle of the data set
    while boundary < len(message) // 2:
        boundary += 6 + int.from_bytes(message[boundary + 2 : boundary + 6], "big")
    if where == "mid-data-set":  # whole PDUs, half of the data set
        return message[:boundary]
    if where == "mid-pdu":  # inside the data of a P-DATA-TF
        return message[: boundary - 1000]
    if where == "mid-pdu-header":  # 3 bytes into a PDU header
        return message[: boundary + 3]
    assert where == "during-release"  # all of it; then A-RELEASE-RQ after the response
    return message


async def _read_store_response(stream: Any) -> None:
    """Read until a P-DATA-TF (the C-STORE-RSP: responses are one small PDU) arrives."""
    buffer = b""
    while True:
        buffer += await stream.receive()
        while len(buffer) >= 6 and len(buffer) >= 6 + int.from_bytes(buffer[2:6], "big"):
            if buffer[0] == 0x04:
                return
            buffer = buffer[6 + int.from_bytes(buffer[2:6], "big") :]


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("where", ["mid-data-set", "mid-pdu", "mid-pdu-header", "during-release"])
async def test_peer_vanishing_leaves_no_file_and_frees_everything(
    tmp_path: Path, where: str, close: str
) -> None:
    data_dir = tmp_path / "incoming"
    uid = f"1.2.826.0.1.3680043.10.1337.8.{len(where)}.{len(close)}"
    # 3 MiB: more than the writer keeps in memory, so a temporary file exists mid-way.
    rq, message = _store_session(uid, 3 * 1024 * 1024)
    sent = _cut(message, where)
    config = SCPConfig(dimse_timeout=30.0, idle_timeout=30.0, artim_timeout=30.0)
    async with running_scp(data_dir, config=config) as scp:
        baseline = open_fds()
        with anyio.fail_after(20):
            stream = await anyio.connect_tcp(LOOPBACK, scp.port)
            await stream.send(rq)
            answer = await stream.receive()
            assert answer[0] == 0x02, answer[:8]  # A-ASSOCIATE-AC
            await stream.send(sent)
            if where == "during-release":
                # Acknowledged, then the peer asks to release and vanishes without the RP.
                await _read_store_response(stream)
                await stream.send(release_rq().encode())
            if where == "mid-data-set":
                # The data set has started arriving: a temporary file is being written.
                await wait_until(
                    lambda: leftover_temporary_files(data_dir), "temporary file appears"
                )
            if close == "rst":
                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
        # The DIMSE timeout is 30 s: anything faster is the server noticing the close.
        seconds = await wait_until(
            lambda: scp.stats.active_associations == 0 and open_fds() <= baseline,
            "association released and descriptors closed",
        )
        figures = (
            f"{where}/{close}: cleaned up {seconds * 1000:.0f} ms after the close; "
            f"fds {open_fds()} (baseline {baseline})"
        )
        print(figures)
        assert leftover_temporary_files(data_dir) == [], figures
        stored = stored_files(data_dir)
        if where == "during-release":
            # Acknowledged before the peer left: stored, complete.
            assert [path.name for path in stored] == [f"{uid}.dcm"], figures
            assert parses_fully(stored[0]), figures
        else:
            assert stored == [], figures
        await echo_and_store_work(scp.port, tmp_path / "source", f"{len(where)}{len(close)}")
    assert open_fds() <= baseline


# --- The disk fills up ----------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "2m") -> Any:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_disk_full_answers_a700_keeps_serving_and_recovers(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as data_dir:
        # 700 KB each: two fit in 2 MiB, the third does not.
        sources = make_source_files(tmp_path / "source", 4, tag="21", payload_size=700_000)
        # 3 MB: larger than the writer's memory buffer, so it fails while streaming.
        large = make_source_files(tmp_path / "large", 1, tag="22", payload_size=3_000_000)[0]
        async with running_scp(data_dir) as scp:
            with anyio.fail_after(30):
                async with associate(LOOPBACK, scp.port, contexts=CONTEXTS) as association:
                    results = [await association.store(source.path) for source in sources]
                    large_result = await association.store(large.path)
                    assert await association.echo() == 0  # same association still serves
            statuses = [result.status for result in results]
            assert statuses[:2] == [0, 0], statuses
            assert statuses[2:] == [STATUS_OUT_OF_RESOURCES] * 2, statuses
            assert large_result.status == STATUS_OUT_OF_RESOURCES, large_result
            assert leftover_temporary_files(data_dir) == []
            stored = stored_files(data_dir)
            assert sorted(p.name for p in stored) == sorted(
                f"{s.sop_instance_uid}.dcm" for s in sources[:2]
            )
            by_uid = {s.sop_instance_uid: s for s in sources}
            for path in stored:
                assert stored_dataset_bytes(path) == by_uid[path.stem].dataset
            # Space comes back: the first store after the deletion succeeds.
            started = anyio.current_time()
            for path in stored:
                path.unlink()
            with anyio.fail_after(30):
                async with associate(LOOPBACK, scp.port, contexts=CONTEXTS) as association:
                    retry = await association.store(sources[2].path)
            recovery = anyio.current_time() - started
            figures = (
                f"disk full: statuses {[hex(s or 0) for s in statuses]}, large 0x"
                f"{large_result.status or 0:04X}; first success {recovery * 1000:.0f} ms "
                f"after space was freed (new association included)"
            )
            print(figures)
            assert retry.status == 0, figures
            assert leftover_temporary_files(data_dir) == [], figures
            assert scp.stats.failures_by_status.get(STATUS_OUT_OF_RESOURCES) == 3, figures


@pytest.mark.parametrize("blocked", ["patient-folder", "temp-folder"])
async def test_unwritable_directory_fails_the_store_and_keeps_serving(
    tmp_path: Path, blocked: str
) -> None:
    data_dir = tmp_path / "incoming"
    sources = make_source_files(tmp_path / "source", 2, tag=f"3{len(blocked)}")
    async with running_scp(data_dir) as scp:
        # A file where a folder must go: even root cannot write through it.
        obstacle = data_dir / ("FUZZ" if blocked == "patient-folder" else TEMP_DIR_NAME)
        shutil.rmtree(obstacle, ignore_errors=True)
        obstacle.write_bytes(b"not a folder")
        with anyio.fail_after(30):
            async with associate(LOOPBACK, scp.port, contexts=CONTEXTS) as association:
                failed = await association.store(sources[0].path)
                assert await association.echo() == 0
        assert failed.status is not None
        assert failed.status == STATUS_OUT_OF_RESOURCES or 0xC000 <= failed.status <= 0xCFFF, failed
        assert stored_files(data_dir) == []
        assert [p for p in data_dir.rglob("*.part")] == []
        obstacle.unlink()
        with anyio.fail_after(30):
            async with associate(LOOPBACK, scp.port, contexts=CONTEXTS) as association:
                assert (await association.store(sources[1].path)).status == 0
        assert [p.stem for p in stored_files(data_dir)] == [sources[1].sop_instance_uid]


# --- SIGKILL under load ---------------------------------------------------------------------------


def test_sigkill_under_load_loses_no_acknowledged_file(tmp_path: Path) -> None:
    """Kill -9 the server mid-way through 4 associations of stores, restart it on the
    same folder: every acknowledged file is there byte for byte, nothing is truncated,
    and the temporary files the kill left are removed at start."""
    data_dir = tmp_path / "incoming"
    # 1.2 MB each: above the writer's 1 MiB memory buffer, so in-flight stores have
    # temporary files on disk when the kill comes.
    sources = make_source_files(tmp_path / "source", 100, tag="41", payload_size=1_200_000)
    server = ScpProcess(data_dir, tmp_path / "server.log")
    port = server.start()
    acknowledged: list[str] = []
    kill_after = 30
    lock = threading.Lock()

    def on_result(result: Any) -> None:
        with lock:
            if result.status == 0:
                acknowledged.append(result.sop_instance_uid)
                if len(acknowledged) == kill_after:
                    os.kill(server.pid, 9)  # SIGKILL, from inside the load

    try:
        results = anyio.run(_store_all, port, [s.path for s in sources], on_result)
    finally:
        server.kill()
    temp_before = leftover_temporary_files(data_dir)
    failed = sum(result.status != 0 for result in results)

    started = time.monotonic()
    restarted = ScpProcess(data_dir, tmp_path / "server2.log")
    new_port = restarted.start()
    restart_seconds = time.monotonic() - started
    try:
        temp_after = leftover_temporary_files(data_dir)
        on_disk = {path.stem: path for path in stored_files(data_dir)}
        by_uid = {source.sop_instance_uid: source for source in sources}
        missing = [uid for uid in acknowledged if uid not in on_disk]
        different = [
            uid
            for uid in acknowledged
            if uid in on_disk and split_part10(on_disk[uid].read_bytes())[1] != by_uid[uid].dataset
        ]
        truncated = [path for path in on_disk.values() if not parses_fully(path)]
        figures = (
            f"SIGKILL after {kill_after} acknowledged stores: {len(acknowledged)} acknowledged "
            f"in all, {failed} not stored, {len(on_disk)} files on disk; "
            f"missing {len(missing)}, different {len(different)}, truncated {len(truncated)}; "
            f"temporary files {len(temp_before)} after the kill, {len(temp_after)} after "
            f"restart; restart to listening {restart_seconds:.2f} s"
        )
        print(figures)
        assert len(acknowledged) >= kill_after and failed > 0, figures
        assert not missing and not different and not truncated, figures
        assert temp_after == [], figures
        # Unacknowledged files may exist (stored before their response left): complete.
        assert set(on_disk) <= set(by_uid), figures
        rest = [s.path for s in sources if s.sop_instance_uid not in on_disk]
        again = anyio.run(_store_all, new_port, rest, None)
        assert all(result.status == 0 for result in again), figures
        assert len(stored_files(data_dir)) == len(sources), figures
    finally:
        restarted.stop()


async def _store_all(port: int, paths: list[Path], on_result: Any) -> list[Any]:
    with anyio.fail_after(120):
        return await store_files(
            LOOPBACK, port, paths, associations=4, on_result=on_result, acse_timeout=10
        )


# --- Callbacks --------------------------------------------------------------------------------


async def test_raising_callbacks_are_counted_and_reception_goes_on(tmp_path: Path) -> None:
    def sync_raises(dataset: Any) -> None:
        raise RuntimeError("callback failure (expected by the test)")

    async def async_raises(instance: StoredInstance) -> None:
        raise ValueError("async callback failure (expected by the test)")

    sources = make_source_files(tmp_path / "source", 10, tag="51")
    async with running_scp(
        tmp_path / "incoming", callbacks=[sync_raises], event_callbacks=[async_raises]
    ) as scp:
        results = await _store_paths(scp.port, [s.path for s in sources])
        assert [r.status for r in results] == [0] * 10
        await wait_until(lambda: scp.callback_failures == 20, "20 callback failures counted")
        await echo_and_store_work(scp.port, tmp_path / "more", "52")
    assert len(stored_files(tmp_path / "incoming")) == 11


async def _store_paths(port: int, paths: list[Path]) -> list[Any]:
    with anyio.fail_after(60):
        async with associate(LOOPBACK, port, contexts=CONTEXTS) as association:
            return [await association.store(path) for path in paths]


async def test_hung_callbacks_hold_back_the_fifth_response_within_the_bound(
    tmp_path: Path,
) -> None:
    """max_pending_callbacks=4: four stores answer at once, the fifth response waits
    until a callback finishes (the documented backpressure), then completes."""
    release = anyio.Event()
    started: list[str] = []

    async def hung(instance: StoredInstance) -> None:
        started.append(instance.sop_instance_uid)
        await release.wait()

    sources = make_source_files(tmp_path / "source", 5, tag="53")
    config = SCPConfig(max_pending_callbacks=4)
    async with running_scp(tmp_path / "incoming", event_callbacks=[hung], config=config) as scp:
        fifth_done = anyio.Event()
        statuses: list[int | None] = []
        async with associate(LOOPBACK, scp.port, contexts=CONTEXTS) as association:
            with anyio.fail_after(10):
                for source in sources[:4]:
                    statuses.append((await association.store(source.path)).status)
            assert statuses == [0, 0, 0, 0]

            async def fifth() -> None:
                statuses.append((await association.store(sources[4].path)).status)
                fifth_done.set()

            async with anyio.create_task_group() as group:
                group.start_soon(fifth)
                # A bounded wait that must run out: the response is held back.
                with anyio.move_on_after(1.0):
                    await fifth_done.wait()
                held_back = not fifth_done.is_set()
                on_disk_while_held = len(stored_files(tmp_path / "incoming"))
                release.set()
                with anyio.fail_after(10):
                    await fifth_done.wait()
        figures = (
            f"callbacks started {len(started)}, fifth response held back {held_back}, "
            f"files on disk while held {on_disk_while_held}, statuses {statuses}"
        )
        print(figures)
        assert held_back, figures
        # The fifth file was already committed: only its response (and reading) waited.
        assert on_disk_while_held == 5, figures
        assert statuses == [0] * 5, figures
        await wait_until(lambda: len(started) == 5, "the fifth callback runs")


async def test_slow_callbacks_never_exceed_the_pending_bound(tmp_path: Path) -> None:
    running = 0
    most = 0
    guard = threading.Lock()

    def slow(dataset: Any) -> None:  # a sync callback: runs in a worker thread
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # the callback's own slowness, not a wait in the test
        with guard:
            running -= 1

    sources = make_source_files(tmp_path / "source", 24, tag="54")
    config = SCPConfig(max_pending_callbacks=3)
    async with running_scp(tmp_path / "incoming", callbacks=[slow], config=config) as scp:
        with anyio.fail_after(60):
            results = await store_files(
                LOOPBACK, scp.port, [s.path for s in sources], associations=4
            )
        assert all(r.status == 0 for r in results)
        await wait_until(lambda: scp._runner is not None and scp._runner.completed == 24, "done")
    print(f"slow callbacks: at most {most} running at once (bound 3)")
    assert 1 <= most <= 3


async def test_shutdown_with_a_hung_callback_ends_within_shutdown_timeout(
    tmp_path: Path,
) -> None:
    cancelled = threading.Event()

    async def hangs_forever(instance: StoredInstance) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    source = make_source_files(tmp_path / "source", 1, tag="55")[0]
    config = SCPConfig(shutdown_timeout=1.0)
    with anyio.fail_after(15):
        async with running_scp(
            tmp_path / "incoming", event_callbacks=[hangs_forever], config=config
        ) as scp:
            assert (await _store_paths(scp.port, [source.path]))[0].status == 0
            stopping = anyio.current_time()
        elapsed = anyio.current_time() - stopping
    print(f"shutdown with a hung callback took {elapsed:.2f} s (shutdown_timeout 1 s)")
    assert elapsed < 5.0
    assert cancelled.is_set()
    assert len(stored_files(tmp_path / "incoming")) == 1

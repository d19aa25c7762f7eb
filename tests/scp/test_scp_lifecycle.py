"""The SCP's life cycle: the ways to run it, graceful shutdown, duplicate instances.

The peer is the raw-socket requestor of ``test_scp_hostile.py``, so that a test can send
a data set piece by piece and call ``shutdown()`` between two pieces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pydicom.uid import CTImageStorage

from aiodicom import DuplicatePolicy, SCPConfig, StoreSCP
from aiodicom.protocol.dimse import CStoreRQ, CStoreRSP
from raw_peer import (
    STORE_CONTEXTS,
    RawPeer,
    ct_dataset,
    echo_works,
    message_bytes,
    raw_peer,
)
from scp_helpers import (
    LOOPBACK,
    leftover_temporary_files,
    running_scp,
    stored_dataset_bytes,
    stored_files,
)

pytestmark = pytest.mark.anyio

# Several megabytes: many P-DATA-TF PDUs and more than the writer keeps in memory.
LARGE_PIXEL_BYTES = 6 * 1024 * 1024
PIECE = 256 * 1024


async def _refused(port: int) -> bool:
    try:
        stream = await anyio.connect_tcp(LOOPBACK, port)
    except OSError:
        return True
    await stream.aclose()
    return False


# --- Ways to run it ------------------------------------------------------------------------------


async def test_async_with_serves_until_the_block_ends(tmp_path: Path) -> None:
    scp = StoreSCP(ae_title="AIODICOM", host=LOOPBACK, port=0, data_dir=tmp_path / "incoming")
    with anyio.fail_after(20):
        async with scp:
            assert scp.port > 0
            await echo_works(scp.port)
        assert await _refused(scp.port)
    assert scp.stats.associations == 1


async def test_embedded_in_a_task_group_and_shut_down(tmp_path: Path) -> None:
    scp = StoreSCP(host=LOOPBACK, port=0, data_dir=tmp_path / "incoming")
    with anyio.fail_after(20):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(scp.serve)
            assert port == scp.port and port > 0
            await echo_works(port)
            scp.shutdown()
        # The task group ended: serve() returned by itself after shutdown().
    assert await _refused(port)
    assert scp.stats.echoes == 1


# --- Graceful shutdown ---------------------------------------------------------------------------


class StoreProbe:
    """Tells the test how far the server has got with the data set it is receiving.

    It wraps the storage writer's ``begin()``, which the server calls in its event loop
    as soon as it has decoded a C-STORE-RQ, and the ``write()`` of the incoming file it
    returns, which the server awaits for each data-set chunk it handles. (anyio's
    ``wait_all_tasks_blocked`` is not enough: on asyncio it does not wait for bytes just
    sent to be read.)
    """

    def __init__(self, scp: StoreSCP) -> None:
        self.began = anyio.Event()
        self.received = 0
        self._waiters: list[tuple[int, anyio.Event]] = []
        begin = scp.storage.begin

        def probing_begin(**arguments: Any) -> Any:
            incoming = begin(**arguments)
            write = incoming.write

            async def counting_write(chunk: Any) -> None:
                await write(chunk)
                self.received = incoming.received
                for threshold, event in self._waiters:
                    if self.received >= threshold:
                        event.set()

            incoming.write = counting_write  # type: ignore[method-assign]
            self.began.set()
            return incoming

        scp.storage.begin = probing_begin  # type: ignore[method-assign]

    async def wait_handled(self, data_set_bytes: int) -> None:
        """Until the server has handled that many data-set bytes (its events are done)."""
        event = anyio.Event()
        self._waiters.append((data_set_bytes, event))
        if self.received >= data_set_bytes:
            event.set()
        with anyio.fail_after(10):
            await event.wait()


def _last_pdu_start(message: bytes) -> int:
    """The offset of the last P-DATA-TF in a run of PDUs (PS3.8 9.3.1 headers)."""
    offset = last = 0
    while offset < len(message):
        last = offset
        offset += 6 + int.from_bytes(message[offset + 2 : offset + 6], "big")
    assert offset == len(message)
    return last


# Our Maximum Length in these tests: 64 KiB PDUs, so that the last one is small and a
# single send of it (plus a little before it) arrives in one read of the server.
SHUTDOWN_CONFIG = SCPConfig(
    max_pdu_length=65536, shutdown_timeout=15.0, dimse_timeout=30.0, idle_timeout=30.0
)


async def _store_across_shutdown(
    scp: StoreSCP, peer: RawPeer, uid: str, tail_before_last_pdu: int
) -> CStoreRSP:
    """Send a large data set in pieces, calling shutdown() once the server is receiving
    it; the final send holds the last PDU and the ``tail_before_last_pdu`` bytes before
    it, and goes out only after the server has handled everything before."""
    probe = StoreProbe(scp)
    await peer.associate(STORE_CONTEXTS)
    dataset = ct_dataset(uid, pixel_bytes=LARGE_PIXEL_BYTES)
    message = message_bytes(peer, 1, CStoreRQ(1, CTImageStorage, uid), dataset)
    last_pdu = _last_pdu_start(message)
    # The last PDU holds one data-set PDV: 6 bytes of PDV header besides its data.
    last_pdv_data = len(message) - last_pdu - 6 - 6
    tail = last_pdu - tail_before_last_pdu
    await peer.send(message[:PIECE])
    with anyio.fail_after(10):
        await probe.began.wait()
    scp.shutdown()
    for start in range(PIECE, tail, PIECE):
        await peer.send(message[start : min(start + PIECE, tail)])
        await anyio.sleep(0.005)  # a slow sender: pacing, not waiting
    await probe.wait_handled(len(dataset) - last_pdv_data - tail_before_last_pdu)
    await peer.send(message[tail:])
    response = await peer.receive_command()
    assert isinstance(response, CStoreRSP)
    return response


async def _check_graceful_store(tmp_path: Path, tail_before_last_pdu: int) -> None:
    data_dir = tmp_path / "incoming"
    uid = "1.2.826.0.1.3680043.10.8001"
    with anyio.fail_after(30):
        async with (
            running_scp(data_dir, sort_by="IMAGE", config=SHUTDOWN_CONFIG) as scp,
            raw_peer(scp.port) as peer,
        ):
            started = anyio.current_time()
            response = await _store_across_shutdown(scp, peer, uid, tail_before_last_pdu)
            assert response.status == 0x0000
            # Stored before the answer: the file is there now, complete.
            path = data_dir / f"{uid}.dcm"
            assert stored_dataset_bytes(path) == ct_dataset(uid, pixel_bytes=LARGE_PIXEL_BYTES)
            # Then the association, idle again, is aborted.
            await peer.expect_abort_and_close()
            assert anyio.current_time() - started < SHUTDOWN_CONFIG.shutdown_timeout
    assert stored_files(data_dir) == [data_dir / f"{uid}.dcm"]
    assert leftover_temporary_files(data_dir) == []
    assert scp.stats.stored == 1


async def test_shutdown_lets_an_in_flight_store_finish_then_aborts(tmp_path: Path) -> None:
    # The last PDU arrives alone: one data-set event in the server's last read.
    await _check_graceful_store(tmp_path, tail_before_last_pdu=0)


async def test_shutdown_lets_a_store_finish_whose_end_came_in_one_read(tmp_path: Path) -> None:
    # The last read holds the end of one PDV and the whole last PDU: two data-set events
    # come out of it, and the store must still finish.
    await _check_graceful_store(tmp_path, tail_before_last_pdu=1000)


async def test_shutdown_aborts_an_idle_association_at_once(tmp_path: Path) -> None:
    config = SCPConfig(shutdown_timeout=30.0, idle_timeout=60.0)
    with anyio.fail_after(20):
        async with running_scp(tmp_path, config=config) as scp, raw_peer(scp.port) as peer:
            await peer.associate(STORE_CONTEXTS)
            assert (await peer.echo(context_id=3)).status == 0x0000
            started = anyio.current_time()
            scp.shutdown()
            await peer.expect_abort_and_close(timeout=5.0)
            assert anyio.current_time() - started < 2.0


async def test_store_unfinished_at_the_shutdown_deadline_is_cancelled(tmp_path: Path) -> None:
    config = SCPConfig(shutdown_timeout=0.5, dimse_timeout=60.0, idle_timeout=60.0)
    data_dir = tmp_path / "incoming"
    uid = "1.2.826.0.1.3680043.10.8002"
    with anyio.fail_after(20):
        async with (
            running_scp(data_dir, sort_by="IMAGE", config=config) as scp,
            raw_peer(scp.port) as peer,
        ):
            probe = StoreProbe(scp)
            await peer.associate(STORE_CONTEXTS)
            dataset = ct_dataset(uid, pixel_bytes=LARGE_PIXEL_BYTES)
            message = message_bytes(peer, 1, CStoreRQ(1, CTImageStorage, uid), dataset)
            # Half the message, past the writer's memory buffer (so part of it is in
            # a temporary file), then the sender stalls.
            half = len(message) // 2
            for start in range(0, half, PIECE):
                await peer.send(message[start : min(start + PIECE, half)])
            await probe.wait_handled(2 * 1024 * 1024)
            started = anyio.current_time()
            scp.shutdown()
            await peer.expect_abort_and_close(timeout=5.0)
            elapsed = anyio.current_time() - started
        assert config.shutdown_timeout - 0.1 <= elapsed < 4.0, elapsed
    assert stored_files(data_dir) == []
    assert leftover_temporary_files(data_dir) == []
    assert scp.stats.stored == 0


# --- Duplicate SOP Instance UIDs -----------------------------------------------------------------


# DuplicatePolicy (aiodicom.storage.writer): REPLACE atomically replaces the file and
# succeeds; KEEP_EXISTING keeps the old file, discards the new data and succeeds; REJECT
# keeps the old file and fails with 0x0111 Duplicate SOP Instance (PS3.7 C.5.6).
DUPLICATE_OUTCOMES = {
    DuplicatePolicy.REPLACE: ([0x0000, 0x0000], "SECOND"),
    DuplicatePolicy.KEEP_EXISTING: ([0x0000, 0x0000], "FIRST"),
    DuplicatePolicy.REJECT: ([0x0000, 0x0111], "FIRST"),
}


@pytest.mark.parametrize("policy", list(DuplicatePolicy))
@pytest.mark.parametrize("sort_by", ["IMAGE", "PATIENT"])
async def test_duplicate_sop_instance_policies(
    tmp_path: Path, policy: DuplicatePolicy, sort_by: str
) -> None:
    expected_statuses, kept = DUPLICATE_OUTCOMES[policy]
    uid = "1.2.826.0.1.3680043.10.8100"
    versions = {name: ct_dataset(uid, patient_name=name) for name in ("FIRST", "SECOND")}
    assert versions["FIRST"] != versions["SECOND"]
    data_dir = tmp_path / "incoming"
    config = SCPConfig(duplicates=policy)
    with anyio.fail_after(20):
        async with (
            running_scp(data_dir, sort_by=sort_by, config=config) as scp,
            raw_peer(scp.port) as peer,
        ):
            await peer.associate(STORE_CONTEXTS)
            statuses = [
                (await peer.store(1, uid, versions[name], message_id=index + 1)).status
                for index, name in enumerate(("FIRST", "SECOND"))
            ]
            await peer.release()
    assert statuses == expected_statuses
    [path] = stored_files(data_dir)
    assert path.name == f"{uid}.dcm"
    assert stored_dataset_bytes(path) == versions[kept]
    assert leftover_temporary_files(data_dir) == []

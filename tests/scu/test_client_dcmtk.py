"""The SCU against DCMTK's storescp (bit-preserving, every transfer syntax) on loopback."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from scu_helpers import (
    LOOPBACK,
    corpus_files,
    dcmtk_storescp,
    received_by_instance,
    rounds_by_instance,
    source_dataset,
)

from aiodicom import (
    AssociationAbortedError,
    AssociationRejectedError,
    DimseTimeout,
    associate,
    contexts_for_files,
)

pytestmark = pytest.mark.anyio

# +B: write the data set bit for bit; +xa: accept every transfer syntax; -pm: accept
# SOP classes storescp does not know (private ones in the corpus).
BIT_PRESERVING = ("+B", "+xa", "-pm")


async def test_echo(tmp_path: Path) -> None:
    with dcmtk_storescp(tmp_path) as peer:
        async with associate(LOOPBACK, peer.port) as association:
            assert await association.echo() == 0x0000
            # DCMTK does not do asynchronous operations: no window item, so 1.
            assert association.window == 1
    assert [run.returncode for run in peer.runs] == [0]


async def test_every_sendable_corpus_file_arrives_byte_for_byte(tmp_path: Path) -> None:
    files = corpus_files()
    assert len(files) >= 70
    for number, batch in enumerate(rounds_by_instance(files)):
        folder = tmp_path / f"round{number}"
        with dcmtk_storescp(folder, *BIT_PRESERVING) as peer:
            async with associate(LOOPBACK, peer.port, contexts=contexts_for_files(batch)) as a:
                results = await a.store_many(batch)
        failed = [(r.path, r.status, r.error) for r in results if not r.ok]
        assert not failed, failed
        received = received_by_instance(folder)
        for dicom_file in batch:
            assert received[dicom_file.sop_instance_uid] == source_dataset(dicom_file), (
                dicom_file.path.name
            )


async def test_a_refused_association_carries_dcmtk_codes(tmp_path: Path) -> None:
    with (
        dcmtk_storescp(tmp_path, "--refuse") as peer,
        pytest.raises(AssociationRejectedError) as caught,
    ):
        async with associate(LOOPBACK, peer.port):
            pytest.fail("storescp --refuse should have rejected the association")
    # storescp --refuse: permanent (1), service-user (1), no-reason-given (1).
    assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 1)


async def test_an_abort_during_a_store_surfaces_with_its_codes(tmp_path: Path) -> None:
    ct = next(f for f in corpus_files() if f.path.name == "CT_small.dcm")
    with (
        dcmtk_storescp(tmp_path, "--abort-after", *BIT_PRESERVING) as peer,
        pytest.raises(AssociationAbortedError) as caught,
    ):
        async with associate(LOOPBACK, peer.port, contexts=contexts_for_files([ct])) as a:
            await a.store(ct)
    # An A-ABORT from the service-user (source 0) on the other side, not a local one.
    assert caught.value.source == 0 and not caught.value.local


SLEEPY = ("--sleep-during", "30", *BIT_PRESERVING)


async def test_a_silent_peer_hits_the_dimse_timeout(tmp_path: Path) -> None:
    ct = next(f for f in corpus_files() if f.path.name == "CT_small.dcm")
    with (
        dcmtk_storescp(
            tmp_path, "--sleep-during", "30", *BIT_PRESERVING, kill_at_exit=True
        ) as peer,
        pytest.raises(DimseTimeout),
    ):
        async with associate(
            LOOPBACK, peer.port, contexts=contexts_for_files([ct]), dimse_timeout=1
        ) as a:
            started = anyio.current_time()
            try:
                await a.store(ct)
            finally:
                # The timeout, not the peer's 30 s sleep, ended the wait.
                assert anyio.current_time() - started < 10

"""The SCU against pynetdicom's threaded SCP on loopback."""

from __future__ import annotations

import pytest
from scu_helpers import LOOPBACK, corpus_files, pynetdicom_scp, rounds_by_instance, source_dataset

from aiodicom import AssociationRejectedError, associate, contexts_for_files

pytestmark = pytest.mark.anyio


async def test_echo() -> None:
    with pynetdicom_scp([]) as peer:
        async with associate(LOOPBACK, peer.port) as association:
            assert await association.echo() == 0x0000


async def test_every_sendable_corpus_file_arrives_byte_for_byte() -> None:
    files = corpus_files()
    sop_classes = [dicom_file.sop_class_uid for dicom_file in files]
    for batch in rounds_by_instance(files):
        with pynetdicom_scp(sop_classes) as peer:
            async with associate(
                LOOPBACK, peer.port, contexts=contexts_for_files(batch)
            ) as association:
                results = await association.store_many(batch)
            failed = [(r.path, r.status, r.error) for r in results if not r.ok]
            assert not failed, failed
            for dicom_file in batch:
                received = peer.received[dicom_file.sop_instance_uid]
                assert received == source_dataset(dicom_file), dicom_file.path.name


async def test_a_wrong_called_ae_title_is_rejected() -> None:
    with pynetdicom_scp([], ae_title="STRICT", require_called_aet=True) as peer:
        with pytest.raises(AssociationRejectedError) as caught:
            async with associate(LOOPBACK, peer.port, called_ae="SOMEONE_ELSE"):
                pytest.fail("the association should have been rejected")
        assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 7)
        async with associate(LOOPBACK, peer.port, called_ae="STRICT") as association:
            assert await association.echo() == 0

"""The SCP against pynetdicom, a real requestor (loopback only).

pynetdicom is blocking: each test runs it in a worker thread
(``anyio.to_thread.run_sync``) while the server runs in the test's event loop. Every
pynetdicom timeout is a few seconds, so that a broken server fails a test rather than
hanging it.

Files are sent with ``STORE_SEND_CHUNKED_DATASET``: pynetdicom then sends the bytes after
the file's File Meta Information as they are (no decoding, no re-encoding), and takes the
command's SOP Class/Instance UIDs and the transfer syntax from the File Meta Information.
That lets a test choose every byte of a data set by writing the file by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from aiodicom import SCPConfig, StoredInstance
from scp_helpers import (
    LOOPBACK,
    leftover_temporary_files,
    running_scp,
    stored_dataset_bytes,
    stored_files,
)
from support import need_module, part10_dataset_bytes, pydicom_test_files, split_part10

pytestmark = pytest.mark.anyio

VERIFICATION = "1.2.840.10008.1.1"
CALLING_AE_TITLE = "PYNSCU"
# pynetdicom's acse/dimse/network/connection timeouts, in seconds.
PEER_TIMEOUT = 5


@pytest.fixture
def pynetdicom_raw_files(monkeypatch: pytest.MonkeyPatch) -> Any:
    """pynetdicom, set to send file bytes unchanged and to accept any UID we give it.

    Both are module-level settings of pynetdicom: monkeypatch restores them afterwards.
    The UI validator is replaced because the tests send hostile UIDs on purpose (by
    default pynetdicom refuses an empty UID or one over 64 characters in a command).
    """
    pynetdicom = need_module("pynetdicom")
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    monkeypatch.setattr(_config, "VALIDATORS", {**_config.VALIDATORS, "UI": _any_uid})
    return pynetdicom


def _any_uid(value: Any) -> tuple[bool, str]:
    return True, ""


def _make_ae(
    contexts: Sequence[tuple[str, Sequence[str]]], ae_title: str = CALLING_AE_TITLE
) -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    ae.acse_timeout = PEER_TIMEOUT
    ae.dimse_timeout = PEER_TIMEOUT
    ae.network_timeout = PEER_TIMEOUT
    ae.connection_timeout = PEER_TIMEOUT
    for abstract_syntax, transfer_syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
    return ae


def _associate(ae: Any, port: int, called_ae_title: str = "AIODICOM") -> Any:
    """``ae.associate()``, working around two races of pynetdicom's threads (3.0).

    * Its reactor thread can take a C-STORE/C-ECHO response off the queue before
      ``send_c_store()`` reads it (it then logs "Received unexpected ... service message"
      and drops it): a fast SCP makes that likely. Responses it takes are put back.
    * An A-ASSOCIATE-RJ that arrives before its requestor thread has looked at the new
      socket is reported as an abort, the rejection lost. Every A-ASSOCIATE-RJ PDU it
      receives is recorded in ``assoc.received_rejections`` through its public
      ``EVT_PDU_RECV`` event instead.
    """
    from pynetdicom import evt
    from pynetdicom.pdu import A_ASSOCIATE_RJ

    rejections: list[tuple[int | None, int | None, int | None]] = []

    def on_pdu(event: Any) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            pdu = event.pdu
            rejections.append((pdu.result, pdu.source, pdu.reason_diagnostic))

    assoc = ae.associate(
        LOOPBACK, port, ae_title=called_ae_title, evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)]
    )
    assoc.received_rejections = rejections
    serve_request = assoc._serve_request

    def put_back_responses(message: Any, context_id: int) -> None:
        if message.is_valid_response:
            assoc.dimse.msg_queue.put((context_id, message))
        else:
            serve_request(message, context_id)

    assoc._serve_request = put_back_responses
    return assoc


def _status(response: Dataset) -> int | None:
    """The Status of a pynetdicom response; None when there was none (abort, timeout)."""
    return int(response.Status) if "Status" in response else None


# --- Hand-written Part 10 files -------------------------------------------------------------------


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element (PS3.5 7.1.2), padded to even length."""
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return (
            group.to_bytes(2, "little")
            + element.to_bytes(2, "little")
            + vr
            + b"\x00\x00"
            + len(value).to_bytes(4, "little")
            + value
        )
    return (
        group.to_bytes(2, "little")
        + element.to_bytes(2, "little")
        + vr
        + len(value).to_bytes(2, "little")
        + value
    )


def _text(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


@dataclass(frozen=True)
class HandMadeInstance:
    """The attributes that name a stored file, as raw values (None: element absent)."""

    sop_instance_uid: str | bytes | None
    patient_id: str | bytes | None = "PATIENT-1"
    study_instance_uid: str | bytes | None = "1.2.826.0.1.3680043.10.100.1"
    series_instance_uid: str | bytes | None = "1.2.826.0.1.3680043.10.100.1.1"
    sop_class_uid: str = CTImageStorage
    # The File Meta's Media Storage SOP Instance UID, which pynetdicom puts in the command.
    command_sop_instance_uid: str | bytes | None = None

    def dataset_bytes(self) -> bytes:
        elements = [_element(0x0008, 0x0016, b"UI", _text(self.sop_class_uid))]
        if self.sop_instance_uid is not None:
            elements.append(_element(0x0008, 0x0018, b"UI", _text(self.sop_instance_uid)))
        elements.append(_element(0x0008, 0x0060, b"CS", b"CT"))
        elements.append(_element(0x0010, 0x0010, b"PN", b"HOSTILE^TEST"))
        if self.patient_id is not None:
            elements.append(_element(0x0010, 0x0020, b"LO", _text(self.patient_id)))
        if self.study_instance_uid is not None:
            elements.append(_element(0x0020, 0x000D, b"UI", _text(self.study_instance_uid)))
        if self.series_instance_uid is not None:
            elements.append(_element(0x0020, 0x000E, b"UI", _text(self.series_instance_uid)))
        return b"".join(elements)

    def write(self, path: Path) -> Path:
        """A Part 10 file (PS3.10 7.1) whose data set is exactly ``dataset_bytes()``."""
        command_uid = self.command_sop_instance_uid
        if command_uid is None:
            command_uid = self.sop_instance_uid or ""
        meta = b"".join(
            [
                _element(0x0002, 0x0001, b"OB", b"\x00\x01"),
                _element(0x0002, 0x0002, b"UI", _text(self.sop_class_uid)),
                # pydicom reads a UI with a backslash as two values, which pynetdicom
                # cannot put in a command; as UN (with pydicom's replace_un_with_known_vr
                # off) it stays the raw bytes.
                _element(
                    0x0002,
                    0x0003,
                    b"UN" if b"\\" in _text(command_uid) else b"UI",
                    _text(command_uid),
                ),
                _element(0x0002, 0x0010, b"UI", ExplicitVRLittleEndian.encode()),
                _element(0x0002, 0x0012, b"UI", b"1.2.826.0.1.3680043.10.100"),
            ]
        )
        group_length = _element(0x0002, 0x0000, b"UL", len(meta).to_bytes(4, "little"))
        path.write_bytes(b"\x00" * 128 + b"DICM" + group_length + meta + self.dataset_bytes())
        assert split_part10(path.read_bytes())[1] == self.dataset_bytes()
        return path


STORE_CONTEXTS = [
    (CTImageStorage, [ExplicitVRLittleEndian]),
    (VERIFICATION, [ExplicitVRLittleEndian]),
]


def _send_files(
    port: int, files: Sequence[Path], ae_title: str = CALLING_AE_TITLE
) -> list[int | None]:
    """Send each file on one association (a new one if the server aborted); statuses."""
    ae = _make_ae(STORE_CONTEXTS, ae_title)
    statuses: list[int | None] = []
    assoc = None
    try:
        for path in files:
            if assoc is None or not assoc.is_established:
                assoc = _associate(ae, port)
                assert assoc.is_established, "association refused"
            status = _status(assoc.send_c_store(path))
            statuses.append(status)
            if status is None:
                # Aborted (or no answer): pynetdicom may not have seen the A-ABORT yet,
                # so the next file gets a fresh association.
                assoc.abort()
                assoc = None
    finally:
        if assoc is not None and assoc.is_established:
            assoc.release()
    return statuses


# --- The pydicom corpus --------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str  # from the File Meta: what pynetdicom puts in the command
    transfer_syntax_uid: str
    expected_status: int


# Corpus files that cannot be sent as files by any requestor that takes the command's
# UIDs and the transfer syntax from the File Meta Information (as pynetdicom's chunked
# sending does), with the fact about each file that rules it out. The test checks that
# every file it leaves out is listed here, with the reason it computed.
NOT_SENDABLE = {
    "ExplVR_BigEndNoMeta.dcm": "no File Meta Information",
    "ExplVR_LitEndNoMeta.dcm": "no File Meta Information",
    "no_meta.dcm": "no File Meta Information",
    "rtstruct.dcm": "no File Meta Information",
    "empty_charset_LEI.dcm": "File Meta has no Media Storage SOP Class/Instance UID",
    "meta_missing_tsyntax.dcm": "File Meta has no Transfer Syntax UID",
    "nested_priv_SQ.dcm": "File Meta has an empty Media Storage SOP Class/Instance UID",
}


def _corpus() -> tuple[list[CorpusFile], dict[str, str]]:
    """The sendable corpus files with the status each must get, and the others' reasons."""
    sendable: list[CorpusFile] = []
    left_out: dict[str, str] = {}
    for path in pydicom_test_files():
        try:
            meta = pydicom.filereader.read_file_meta_info(path)
        except pydicom.errors.InvalidDicomError:
            left_out[path.name] = "no File Meta Information"
            continue
        if "TransferSyntaxUID" not in meta:
            left_out[path.name] = "File Meta has no Transfer Syntax UID"
            continue
        if "MediaStorageSOPClassUID" not in meta or "MediaStorageSOPInstanceUID" not in meta:
            left_out[path.name] = "File Meta has no Media Storage SOP Class/Instance UID"
            continue
        sop_class = str(meta.MediaStorageSOPClassUID)
        sop_instance = str(meta.MediaStorageSOPInstanceUID)
        if not sop_class or not sop_instance:
            left_out[path.name] = "File Meta has an empty Media Storage SOP Class/Instance UID"
            continue
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        in_data_set = (dataset.get("SOPClassUID"), dataset.get("SOPInstanceUID"))
        if None in in_data_set:
            # PS3.4 B.2.3 "cannot understand"; the writer's 0xC001 (missing UID)
            expected = 0xC001
        elif in_data_set != (sop_class, sop_instance):
            # The File Meta names another instance than the data set it holds: the
            # command then contradicts the data set (PS3.4 B.2.3: 0xA900).
            expected = 0xA900
        else:
            expected = 0x0000
        sendable.append(
            CorpusFile(path, sop_class, sop_instance, str(meta.TransferSyntaxUID), expected)
        )
    return sendable, left_out


def _send_corpus(port: int, data_dir: Path, files: Sequence[CorpusFile]) -> list[str]:
    """Send every file on one association, checking each stored file right away."""
    contexts = sorted({(item.sop_class_uid, item.transfer_syntax_uid) for item in files})
    assert len(contexts) <= 128  # PS3.8 9.3.2.2: odd context IDs 1-255
    ae = _make_ae([(abstract, [syntax]) for abstract, syntax in contexts])
    problems: list[str] = []
    assoc = _associate(ae, port)
    assert assoc.is_established
    try:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        assert accepted == set(contexts), set(contexts) - accepted
        for item in files:
            status = _status(assoc.send_c_store(item.path))
            name = item.path.name
            if status != item.expected_status:
                problems.append(f"{name}: status {status!r}, expected {item.expected_status:#06x}")
                continue
            stored_path = data_dir / f"{item.sop_instance_uid}.dcm"
            if item.expected_status != 0x0000:
                if stored_path.exists():
                    problems.append(f"{name}: refused but stored")
                continue
            # Several corpus files share a SOP Instance UID: each is checked now, before
            # the next one replaces it.
            stored = stored_path.read_bytes()
            if split_part10(stored)[1] != part10_dataset_bytes(item.path):
                problems.append(f"{name}: stored data set bytes differ from the file's")
            meta = pydicom.filereader.read_file_meta_info(stored_path)
            found = (
                meta.MediaStorageSOPClassUID,
                meta.MediaStorageSOPInstanceUID,
                meta.TransferSyntaxUID,
                meta.get("SourceApplicationEntityTitle", "").strip(),
            )
            wanted = (
                item.sop_class_uid,
                item.sop_instance_uid,
                item.transfer_syntax_uid,
                CALLING_AE_TITLE,
            )
            if found != wanted:
                problems.append(f"{name}: file meta {found}, expected {wanted}")
    finally:
        if assoc.is_established:
            assoc.release()
    return problems


async def test_pynetdicom_sends_the_corpus_byte_for_byte(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    files, left_out = _corpus()
    for name, reason in left_out.items():
        assert NOT_SENDABLE.get(name) == reason, f"{name} left out: {reason}"
    assert len(files) >= 65
    assert sum(item.expected_status == 0 for item in files) >= 55
    # pynetdicom's chunked sending starts where our split of the file does.
    from pynetdicom.dsutils import split_dataset

    for item in files:
        offset = split_dataset(item.path)[1]
        assert item.path.read_bytes()[offset:] == part10_dataset_bytes(item.path), item.path

    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir, sort_by="IMAGE") as scp:
        problems = await anyio.to_thread.run_sync(_send_corpus, scp.port, data_dir, files)
        assert not problems, "\n".join(problems)
        assert scp.stats.stored == sum(item.expected_status == 0 for item in files)
    assert leftover_temporary_files(data_dir) == []


# --- Echo, refused data sets, layouts ------------------------------------------------------------


async def test_pynetdicom_echo(tmp_path: Path, pynetdicom_raw_files: Any) -> None:
    def echo(port: int) -> int | None:
        assoc = _associate(_make_ae([(VERIFICATION, [ExplicitVRLittleEndian])]), port)
        assert assoc.is_established
        try:
            return _status(assoc.send_c_echo())
        finally:
            assoc.release()

    async with running_scp(tmp_path) as scp:
        assert await anyio.to_thread.run_sync(echo, scp.port) == 0x0000
        assert scp.stats.echoes == 1


async def test_data_set_uid_differing_from_the_command_is_refused(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    source = HandMadeInstance(
        sop_instance_uid="1.2.826.0.1.3680043.10.200.1",
        command_sop_instance_uid="1.2.826.0.1.3680043.10.200.2",
    ).write(tmp_path / "mismatch.dcm")
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir) as scp:
        statuses = await anyio.to_thread.run_sync(_send_files, scp.port, [source])
        assert statuses == [0xA900]
    assert [path for path in data_dir.rglob("*") if path.is_file()] == []


async def test_data_set_without_sop_instance_uid_is_refused(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    source = HandMadeInstance(
        sop_instance_uid=None, command_sop_instance_uid="1.2.826.0.1.3680043.10.200.3"
    ).write(tmp_path / "no-uid.dcm")
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir) as scp:
        [status] = await anyio.to_thread.run_sync(_send_files, scp.port, [source])
        assert status is not None and status & 0xF000 == 0xC000, status
    assert [path for path in data_dir.rglob("*") if path.is_file()] == []


LAYOUT_INSTANCE = HandMadeInstance(
    sop_instance_uid="1.2.826.0.1.3680043.10.300.1.1.1",
    patient_id="PAT-300",
    study_instance_uid="1.2.826.0.1.3680043.10.300.1",
    series_instance_uid="1.2.826.0.1.3680043.10.300.1.1",
)

# The layouts documented in aiodicom.storage.layout.StorageSortKey.
EXPECTED_LAYOUT = {
    "PATIENT": (
        "PAT-300",
        "1.2.826.0.1.3680043.10.300.1",
        "1.2.826.0.1.3680043.10.300.1.1",
        "1.2.826.0.1.3680043.10.300.1.1.1.dcm",
    ),
    "STUDY": (
        "1.2.826.0.1.3680043.10.300.1",
        "1.2.826.0.1.3680043.10.300.1.1",
        "1.2.826.0.1.3680043.10.300.1.1.1.dcm",
    ),
    "SERIES": ("1.2.826.0.1.3680043.10.300.1.1", "1.2.826.0.1.3680043.10.300.1.1.1.dcm"),
    "IMAGE": ("1.2.826.0.1.3680043.10.300.1.1.1.dcm",),
}


@pytest.mark.parametrize("sort_by", list(EXPECTED_LAYOUT))
async def test_sort_layouts(tmp_path: Path, pynetdicom_raw_files: Any, sort_by: str) -> None:
    source = LAYOUT_INSTANCE.write(tmp_path / "layout.dcm")
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir, sort_by=sort_by) as scp:
        assert await anyio.to_thread.run_sync(_send_files, scp.port, [source]) == [0]
    assert stored_files(data_dir) == [data_dir.joinpath(*EXPECTED_LAYOUT[sort_by])]
    assert stored_dataset_bytes(data_dir.joinpath(*EXPECTED_LAYOUT[sort_by])) == (
        LAYOUT_INSTANCE.dataset_bytes()
    )


# --- Path traversal ------------------------------------------------------------------------------

HOSTILE_VALUES: dict[str, bytes] = {
    "parent-parent-etc": b"../../etc",
    "into-sentinel": b"../sentinel/evil",
    "absolute": b"/abs",
    "backslash": b"a\\b",
    "dot-dot": b"..",
    "dot": b".",
    "empty": b"",
    "nul": b"\x00",
    "nul-inside": b"1.2\x00/../../sentinel",
    "control": b"1.2\n3\r4\t5\x1b",
    "non-ascii": "1.2.\u00e9\u65e5".encode(),
    "long-digits": b"1." + b"2" * 198,
    "long-dots": b"../" * 66 + b"..",
}
FIELDS = ("patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid")
# Which data-set UIDs each layout puts in the path (StorageSortKey).
PATH_UIDS = {
    "PATIENT": {"study_instance_uid", "series_instance_uid", "sop_instance_uid"},
    "STUDY": {"study_instance_uid", "series_instance_uid", "sop_instance_uid"},
    "SERIES": {"series_instance_uid", "sop_instance_uid"},
    "IMAGE": {"sop_instance_uid"},
}


def _traversal_cases() -> Iterator[tuple[str, HandMadeInstance]]:
    for number, (field_name, (label, value)) in enumerate(
        (field_name, item) for field_name in FIELDS for item in HOSTILE_VALUES.items()
    ):
        values: dict[str, Any] = {"sop_instance_uid": f"1.2.826.0.1.3680043.10.400.{number + 1}"}
        values[field_name] = value
        yield f"{field_name}={label}", HandMadeInstance(**values)


def _inside(path: Path, root: Path) -> bool:
    resolved, root = path.resolve(), root.resolve()
    return resolved != root and resolved.is_relative_to(root)


@pytest.mark.parametrize("sort_by", list(PATH_UIDS))
async def test_hostile_values_never_escape_the_data_directory(
    tmp_path: Path, pynetdicom_raw_files: Any, sort_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pydicom.config, "replace_un_with_known_vr", False)
    cases = list(_traversal_cases())
    sources = [case.write(tmp_path / f"case{index}.dcm") for index, (_, case) in enumerate(cases)]
    data_dir = tmp_path / "incoming"
    # Beside the data directory: "../sentinel/..." values aim here.
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    before = {path for path in tmp_path.rglob("*")}
    async with running_scp(data_dir, sort_by=sort_by) as scp:
        statuses = await anyio.to_thread.run_sync(_send_files, scp.port, sources)
    problems = []
    for (label, _), status in zip(cases, statuses, strict=True):
        field_name, value_name = label.split("=")
        if field_name in PATH_UIDS[sort_by]:
            if value_name == "non-ascii":
                if status is None or status & 0xF000 != 0xC000:
                    problems.append(f"{label}: status {status}, not a 0xCxxx failure")
            elif field_name == "sop_instance_uid" and value_name in ("empty", "nul"):
                # pynetdicom sends no Affected SOP Instance UID for an empty one: a broken
                # command, so an abort (None) is as right as a failure status.
                if status is not None and status & 0xF000 != 0xC000:
                    problems.append(f"{label}: status {status:#06x}, expected a failure")
            elif status is None or status & 0xF000 != 0xC000:
                problems.append(f"{label}: status {status!r}, expected 0xCxxx")
        elif status != 0x0000:
            problems.append(f"{label}: status {status!r}, expected success (not in the path)")
    assert not problems, "\n".join(problems)
    assert list(sentinel.iterdir()) == []
    created = {path for path in tmp_path.rglob("*")} - before
    outside = [path for path in created if not _inside(path, data_dir)]
    assert outside == [data_dir], outside
    for path in stored_files(data_dir):
        assert _inside(path, data_dir)
        parts = path.relative_to(data_dir).parts
        assert all(part not in ("", ".", "..") and not part.startswith(".") for part in parts)
    expected_stored = sum(label.split("=")[0] not in PATH_UIDS[sort_by] for label, _ in cases)
    assert len(stored_files(data_dir)) == expected_stored
    assert leftover_temporary_files(data_dir) == []


async def test_non_ascii_study_uid_gets_a_failure_status_not_an_abort(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    instance = HandMadeInstance(
        sop_instance_uid="1.2.826.0.1.3680043.10.600.1", study_instance_uid="1.2.\u00e9".encode()
    )
    source = instance.write(tmp_path / "study.dcm")
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir, sort_by="STUDY") as scp:
        statuses = await anyio.to_thread.run_sync(_send_files, scp.port, [source])
    assert statuses[0] is not None and statuses[0] & 0xF000 == 0xC000, statuses
    assert stored_files(data_dir) == []


async def test_non_ascii_sop_instance_uid_gets_a_failure_status_not_an_abort(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    source = HandMadeInstance(sop_instance_uid="1.2.\u00e9".encode()).write(tmp_path / "e.dcm")
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir, sort_by="IMAGE") as scp:
        statuses = await anyio.to_thread.run_sync(_send_files, scp.port, [source])
    assert statuses[0] is not None and statuses[0] & 0xF000 == 0xC000, statuses
    assert stored_files(data_dir) == []


# --- Association limits and AE titles ------------------------------------------------------------


async def test_association_limit_rejects_the_third(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    def three_associations(port: int) -> tuple[list[bool], Any]:
        ae = _make_ae([(VERIFICATION, [ExplicitVRLittleEndian])])
        held = [_associate(ae, port) for _ in range(2)]
        try:
            third = _associate(ae, port)
            established = [assoc.is_established for assoc in held]
            if third.is_established:
                third.release()
            # The two held associations still work.
            statuses = [_status(assoc.send_c_echo()) for assoc in held]
            assert statuses == [0, 0]
        finally:
            for assoc in held:
                if assoc.is_established:
                    assoc.release()
        return established, third

    async with running_scp(tmp_path, config=SCPConfig(max_associations=2)) as scp:
        established, third = await anyio.to_thread.run_sync(three_associations, scp.port)
        assert established == [True, True]
        assert not third.is_established
        # PS3.8 Table 9-21: rejected-transient, service-provider (presentation),
        # local-limit-exceeded.
        assert third.received_rejections == [(2, 3, 2)]
        assert scp.stats.rejected_associations == 1


def _rejection(port: int, called: str, calling: str) -> tuple[bool, list[tuple[int, ...]]]:
    """(established, the A-ASSOCIATE-RJ result/source/reason triples received)."""
    ae = _make_ae([(VERIFICATION, [ExplicitVRLittleEndian])], ae_title=calling)
    assoc = _associate(ae, port, called_ae_title=called)
    established = assoc.is_established
    if established:
        assoc.release()
    return established, assoc.received_rejections


async def test_wrong_called_ae_title_is_rejected(tmp_path: Path, pynetdicom_raw_files: Any) -> None:
    config = SCPConfig(require_called_ae_title=True)
    async with running_scp(tmp_path, config=config) as scp:
        wrong = await anyio.to_thread.run_sync(_rejection, scp.port, "NOT_US", CALLING_AE_TITLE)
        right = await anyio.to_thread.run_sync(_rejection, scp.port, "AIODICOM", CALLING_AE_TITLE)
    # PS3.8 Table 9-21: rejected-permanent, service-user, called-AE-title-not-recognized.
    assert wrong == (False, [(1, 1, 7)])
    assert right == (True, [])


async def test_calling_ae_title_allow_list(tmp_path: Path, pynetdicom_raw_files: Any) -> None:
    config = SCPConfig(allowed_calling_ae_titles=frozenset({"FRIEND"}))
    async with running_scp(tmp_path, config=config) as scp:
        stranger = await anyio.to_thread.run_sync(_rejection, scp.port, "AIODICOM", "STRANGER")
        friend = await anyio.to_thread.run_sync(_rejection, scp.port, "AIODICOM", "FRIEND")
    # PS3.8 Table 9-21: rejected-permanent, service-user, calling-AE-title-not-recognized.
    assert stranger == (False, [(1, 1, 3)])
    assert friend == (True, [])


# --- Callbacks -----------------------------------------------------------------------------------


async def test_callbacks_of_every_kind(tmp_path: Path, pynetdicom_raw_files: Any) -> None:
    received: dict[str, list[Any]] = {"sync": [], "async": [], "partial": [], "event": []}

    def sync_callback(dataset: Dataset) -> None:
        received["sync"].append(dataset)

    async def async_callback(dataset: Dataset) -> None:
        await anyio.lowlevel.checkpoint()
        received["async"].append(dataset)

    def tagged_callback(tag: str, dataset: Dataset) -> None:
        received[tag].append(dataset)

    def event_callback(instance: StoredInstance) -> None:
        received["event"].append(instance)

    source = LAYOUT_INSTANCE.write(tmp_path / "callback.dcm")
    data_dir = tmp_path / "incoming"
    dataset_callbacks: list[Callable[..., Any]] = [
        sync_callback,
        async_callback,
        functools.partial(tagged_callback, "partial"),
    ]
    async with running_scp(
        data_dir, callbacks=dataset_callbacks, event_callbacks=[event_callback]
    ) as scp:
        assert await anyio.to_thread.run_sync(_send_files, scp.port, [source]) == [0]
    # Leaving the block shut the server down, which waits for pending callbacks.
    [stored] = stored_files(data_dir)
    for kind in ("sync", "async", "partial"):
        [dataset] = received[kind]
        assert isinstance(dataset, Dataset), kind
        assert dataset.SOPInstanceUID == LAYOUT_INSTANCE.sop_instance_uid
        assert dataset.file_meta.MediaStorageSOPInstanceUID == LAYOUT_INSTANCE.sop_instance_uid
        assert dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    [instance] = received["event"]
    assert isinstance(instance, StoredInstance)
    assert Path(instance.path) == stored
    assert instance.calling_ae_title == CALLING_AE_TITLE
    assert instance.sop_instance_uid == LAYOUT_INSTANCE.sop_instance_uid
    assert instance.peer_address is not None and instance.peer_address[0] == LOOPBACK
    assert scp.callback_failures == 0


async def test_raising_callbacks_are_counted_and_serving_goes_on(
    tmp_path: Path, pynetdicom_raw_files: Any
) -> None:
    raised = anyio.Event()

    def raising_sync(dataset: Dataset) -> None:
        raise RuntimeError("sync callback failure (expected by the test)")

    async def raising_async(dataset: Dataset) -> None:
        raised.set()
        raise RuntimeError("async callback failure (expected by the test)")

    first = HandMadeInstance(sop_instance_uid="1.2.826.0.1.3680043.10.500.1")
    second = HandMadeInstance(sop_instance_uid="1.2.826.0.1.3680043.10.500.2")
    sources = [first.write(tmp_path / "first.dcm"), second.write(tmp_path / "second.dcm")]
    data_dir = tmp_path / "incoming"
    async with running_scp(data_dir, callbacks=[raising_sync, raising_async]) as scp:
        assert await anyio.to_thread.run_sync(_send_files, scp.port, sources[:1]) == [0]
        with anyio.fail_after(10):
            await raised.wait()
        # The server goes on after its callbacks raised.
        assert await anyio.to_thread.run_sync(_send_files, scp.port, sources[1:]) == [0]
    assert scp.callback_failures == 4
    assert scp.stats.stored == 2
    assert len(stored_files(data_dir)) == 2

"""Helpers for the SCU tests: the corpus as sendable files, and real peers to send to.

DCMTK's storescp is run in inetd mode (``-id``): the test listens on 127.0.0.1 port 0
itself and hands each accepted connection to a fresh ``storescp -id`` as its stdin and
stdout. No port is guessed (storescp cannot bind port 0), and nothing polls for the
server to come up: the listening socket exists before the client connects.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.filereader import read_file_meta_info

from aiodicom.scu_files import DicomFile, NotDicomFileError, read_dicom_file
from support import need_executable, need_module, pydicom_test_files, split_part10

LOOPBACK = "127.0.0.1"

# pydicom corpus files that cannot be sent as they are, with the fact that stops them
# (read_dicom_file must refuse exactly these).
UNSENDABLE = {
    "ExplVR_BigEndNoMeta.dcm": "no File Meta (no 'DICM' prefix)",
    "ExplVR_LitEndNoMeta.dcm": "no File Meta (no 'DICM' prefix)",
    "no_meta.dcm": "no File Meta (no 'DICM' prefix)",
    "rtstruct.dcm": "no File Meta (no 'DICM' prefix)",
    "meta_missing_tsyntax.dcm": "File Meta without Transfer Syntax UID",
    "empty_charset_LEI.dcm": "no SOP Class/Instance UID in data set or File Meta",
    "nested_priv_SQ.dcm": "no SOP Class/Instance UID in data set or File Meta",
}


def corpus_files() -> list[DicomFile]:
    """Every sendable corpus file (read_dicom_file accepts it)."""
    files = []
    for path in pydicom_test_files():
        try:
            files.append(read_dicom_file(path))
        except NotDicomFileError:
            continue
    return files


def rounds_by_instance(files: Sequence[DicomFile]) -> list[list[DicomFile]]:
    """Split files so that no SOP Instance UID repeats within a round (several corpus
    files share one, and a receiver names what it stores by it)."""
    rounds: list[list[DicomFile]] = []
    seen: list[set[str]] = []
    for dicom_file in files:
        for index, uids in enumerate(seen):
            if dicom_file.sop_instance_uid not in uids:
                uids.add(dicom_file.sop_instance_uid)
                rounds[index].append(dicom_file)
                break
        else:
            seen.append({dicom_file.sop_instance_uid})
            rounds.append([dicom_file])
    return rounds


# Corpus files whose data set has an odd length: a deflated stream written without the
# trailing NUL PS3.5 A.5 asks for, and a truncated file. They travel with that one pad
# byte (PS3.8 Annex E.1: even fragments), the only byte ever added.
ODD_LENGTH = {"image_dfl.dcm", "rtplan_truncated.dcm"}


def source_dataset(dicom_file: DicomFile) -> bytes:
    """What the receiver must hold: the file's data set, plus the pad of an odd one."""
    data = dicom_file.path.read_bytes()[dicom_file.dataset_offset :]
    return data + b"\x00" if len(data) % 2 else data


def received_by_instance(folder: Path) -> dict[str, bytes]:
    """SOP Instance UID (from each stored file's File Meta) -> its data set bytes."""
    received = {}
    for path in folder.rglob("*"):
        if path.is_file() and not any(part.startswith(".") for part in path.parts):
            uid = str(read_file_meta_info(path).MediaStorageSOPInstanceUID)
            received[uid] = split_part10(path.read_bytes())[1]
    return received


@dataclass
class DcmtkStorescp:
    """DCMTK's storescp behind our own listening socket (see the module docstring)."""

    port: int
    output: Path
    runs: list[subprocess.CompletedProcess[bytes]] = field(default_factory=list)


@contextmanager
def dcmtk_storescp(
    output: Path, *options: str, kill_at_exit: bool = False
) -> Iterator[DcmtkStorescp]:
    """``kill_at_exit``: end the storescp processes still running when the block ends
    (by their pid) instead of waiting for them, e.g. one told to sleep."""
    storescp = need_executable("storescp")
    output.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(8)
    peer = DcmtkStorescp(port=listener.getsockname()[1], output=output)
    children: list[threading.Thread] = []
    processes: list[subprocess.Popen[bytes]] = []

    def serve_one(connection: socket.socket) -> None:
        with connection:
            process = subprocess.Popen(
                [storescp, "-id", "-od", str(output), *options],
                stdin=connection.fileno(),
                stdout=connection.fileno(),
                stderr=subprocess.PIPE,
            )
        processes.append(process)
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        peer.runs.append(subprocess.CompletedProcess(process.args, process.returncode, b"", stderr))

    def accept_loop() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            child = threading.Thread(target=serve_one, args=(connection,), daemon=True)
            children.append(child)
            child.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield peer
    finally:
        # shutdown() wakes the blocked accept(); close() alone may not on Linux.
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=10)
        if kill_at_exit:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        for child in children:
            child.join(timeout=120)


@dataclass
class PynetdicomSCP:
    port: int
    received: dict[str, bytes]
    ae: Any


@contextmanager
def pynetdicom_scp(
    sop_classes: Sequence[str], *, ae_title: str = "PYNETDICOM", require_called_aet: bool = False
) -> Iterator[PynetdicomSCP]:
    """pynetdicom's threaded SCP on 127.0.0.1 port 0, keeping each data set as received
    (``encoded_dataset(include_meta=False)``) by SOP Instance UID."""
    pynetdicom = need_module("pynetdicom")
    from aiodicom.protocol.uids import ALL_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS

    received: dict[str, bytes] = {}
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        data = event.encoded_dataset(include_meta=False)
        with lock:
            received[str(event.request.AffectedSOPInstanceUID)] = data
        return 0x0000

    ae = pynetdicom.AE(ae_title=ae_title)
    ae.require_called_aet = require_called_aet
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    for sop_class in dict.fromkeys(sop_classes):
        ae.add_supported_context(sop_class, list(ALL_TRANSFER_SYNTAXES))
    server = ae.start_server(
        (LOOPBACK, 0), block=False, evt_handlers=[(pynetdicom.evt.EVT_C_STORE, on_store)]
    )
    try:
        yield PynetdicomSCP(port=server.server_address[1], received=received, ae=ae)
    finally:
        server.shutdown()

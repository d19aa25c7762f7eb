"""aiodicom storescu against DCMTK storescu: the same files to the same receiver.

Run: ``/tmp/venv/bin/python benchmarks/bench_scu.py [--rounds 3] [--small 1000] [--ct 100]``

Files are generated with pydicom into a temporary folder (``small``: ~2 KB Secondary
Capture images; ``ct``: ~525 KB CT images, Explicit VR Little Endian). Receivers: DCMTK
``storescp +B +xa`` and aiodicom's own ``storescp``, each a separate process on
127.0.0.1. Senders, each a fresh process timed from start to exit (what a user waits
for): DCMTK ``storescu -R`` and ``aiodicom storescu`` with ``--window 1`` and
``--window 16``. Rounds alternate the senders; the table gives medians of files/s and
MB/s (file bytes) and the ratio to DCMTK. DCMTK's storescp answers no asynchronous
operations window, so ``--window 16`` only pipelines against aiodicom's receiver.

Every DCMTK process runs with ``TCP_NODELAY=1`` in its environment: Debian's DCMTK
leaves Nagle's algorithm on otherwise, and then every small C-STORE-RSP waits for a
delayed ACK (~40 ms), which would measure the kernel, not the programs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

LOOPBACK = "127.0.0.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _environment() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1", "PYTHONUNBUFFERED": "1"}


def _image(sop_class: str, rows: int, bits: int, study: str, series: str) -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = sop_class
    dataset.PatientID = "BENCH"
    dataset.PatientName = "Bench^SCU"
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = series
    dataset.Modality = "CT" if sop_class == CT_IMAGE else "OT"
    dataset.Rows = dataset.Columns = rows
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = sop_class
    return dataset


def write_files(folder: Path, sop_class: str, count: int, rows: int, bits: int) -> list[Path]:
    folder.mkdir(parents=True)
    dataset = _image(sop_class, rows, bits, generate_uid(), generate_uid())
    paths = []
    for index in range(count):
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = index + 1
        dataset.PixelData = os.urandom(rows * rows * bits // 8)
        path = folder / f"{index:05d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _wait_accepting(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextmanager
def dcmtk_receiver(folder: Path) -> Iterator[int]:
    storescp = shutil.which("storescp")
    assert storescp, "DCMTK storescp is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        port = _free_port()
        process = subprocess.Popen(
            [storescp, "+B", "+xa", "-od", str(folder), str(port)],
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _wait_accepting(port, process):
            break
        process.kill()
        process.wait()
    else:
        raise RuntimeError("DCMTK storescp did not start")
    try:
        yield port
    finally:
        process.kill()
        process.wait()


@contextmanager
def aiodicom_receiver(folder: Path) -> Iterator[int]:
    command = [sys.executable, "-m", "aiodicom", "storescp", "--bind", LOOPBACK, "-q"]
    command += ["-od", str(folder), "--sort-by", "IMAGE", "0"]
    process = subprocess.Popen(
        command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(r"listening on port (\d+)", line)
    if match is None:
        process.kill()
        raise RuntimeError(f"aiodicom storescp did not start: {line!r}")
    try:
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(timeout=30)


def dcmtk_sender(port: int, folder: Path, files: list[Path]) -> list[str]:
    storescu = shutil.which("storescu")
    assert storescu, "DCMTK storescu is not installed"
    # -R: propose only the contexts the files need, as aiodicom does.
    return [storescu, "-R", "-aec", "ANY-SCP", LOOPBACK, str(port), *map(str, files)]


def aiodicom_sender(window: int) -> Callable[[int, Path, list[Path]], list[str]]:
    def command(port: int, folder: Path, files: list[Path]) -> list[str]:
        return [
            sys.executable, "-m", "aiodicom", "storescu", "-q", "--window", str(window),
            LOOPBACK, str(port), str(folder),
        ]  # fmt: skip

    return command


# A sender's start-up and exit with nothing to send: subtracted for the "net" columns.
STARTUP_COMMANDS = {
    "DCMTK storescu": lambda: [str(shutil.which("storescu")), "--version"],
    "aiodicom --window 1": lambda: [sys.executable, "-m", "aiodicom", "storescu", "--help"],
    "aiodicom --window 16": lambda: [sys.executable, "-m", "aiodicom", "storescu", "--help"],
}


def startup_seconds(name: str, rounds: int) -> float:
    return statistics.median(timed(STARTUP_COMMANDS[name]()) for _ in range(max(rounds, 5)))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=_environment(), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed: {result.stdout[-500:]!r} {result.stderr[-500:]!r}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000, help="number of ~2 KB files")
    parser.add_argument("--ct", type=int, default=100, help="number of ~525 KB CT files")
    arguments = parser.parse_args()

    senders = {
        "DCMTK storescu": dcmtk_sender,
        "aiodicom --window 1": aiodicom_sender(1),
        "aiodicom --window 16": aiodicom_sender(16),
    }
    receivers = {"DCMTK storescp +B": dcmtk_receiver, "aiodicom storescp": aiodicom_receiver}
    with tempfile.TemporaryDirectory(prefix="bench_scu_") as scratch_name:
        scratch = Path(scratch_name)
        workloads = {
            f"{arguments.small} x 2 KB": write_files(
                scratch / "small", SECONDARY_CAPTURE, arguments.small, 32, 8
            ),
            f"{arguments.ct} x 525 KB CT": write_files(
                scratch / "ct", CT_IMAGE, arguments.ct, 512, 16
            ),
        }
        startup = {name: startup_seconds(name, arguments.rounds) for name in senders}
        rows = []
        for receiver_name, receiver in receivers.items():
            for workload_name, files in workloads.items():
                total_bytes = sum(path.stat().st_size for path in files)
                times: dict[str, list[float]] = {name: [] for name in senders}
                with receiver(scratch / "received" / receiver_name.split()[0]) as port:
                    for _round in range(arguments.rounds):
                        for sender_name, sender in senders.items():
                            command = sender(port, files[0].parent, files)
                            times[sender_name].append(timed(command))
                baseline = statistics.median(times["DCMTK storescu"])
                net_baseline = baseline - startup["DCMTK storescu"]
                for sender_name, measured in times.items():
                    median = statistics.median(measured)
                    net = max(median - startup[sender_name], 1e-6)
                    rows.append(
                        (
                            receiver_name,
                            workload_name,
                            sender_name,
                            len(files) / median,
                            total_bytes / 1e6 / median,
                            baseline / median,
                            len(files) / net,
                            total_bytes / 1e6 / net,
                            net_baseline / net,
                        )
                    )
                    print(f"  {receiver_name} | {workload_name} | {sender_name}: {median:.2f} s")
    print()
    print("start-up (median): " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in startup.items()))
    header = (
        f"{'receiver':<18} {'workload':<16} {'sender':<21} {'files/s':>8} {'MB/s':>7} "
        f"{'ratio':>6} | {'net f/s':>8} {'net MB/s':>8} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        receiver_name, workload_name, sender_name = row[:3]
        files_s, mb_s, ratio, net_files_s, net_mb_s, net_ratio = row[3:]
        print(
            f"{receiver_name:<18} {workload_name:<16} {sender_name:<21} {files_s:>8.0f} "
            f"{mb_s:>7.1f} {ratio:>5.2f}x | {net_files_s:>8.0f} {net_mb_s:>8.1f} {net_ratio:>5.2f}x"
        )
    print(
        f"\nmedians of {arguments.rounds} alternating rounds. Left: the whole sender process "
        "(start, associate, send, release, exit); right (net): minus that sender's own "
        "start-up and exit with nothing to send. ratio: DCMTK's time / this sender's time."
    )


if __name__ == "__main__":
    main()

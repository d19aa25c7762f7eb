"""Start each receiver fresh on a free loopback port, measure its memory, stop it.

Every receiver runs as a subprocess started here and is stopped here by its own pid
(SIGINT, then SIGKILL after a timeout): nothing else on the machine is touched.

Readiness: aiodicom prints its port (it binds port 0). The others are given a port
found by binding port 0 and closing it (DCMTK storescp cannot bind port 0), and are
ready once the kernel lists that port as LISTEN in ``/proc/net/tcp``; a receiver that
exits first (the port was taken in between) is retried on another port.

Memory: the peak resident set (VmHWM in ``/proc/PID/status``) of the receiver process
and its living descendants, summed, read just before the receiver is stopped. Every
receiver here runs as one process (DCMTK storescp without ``--fork``), so the sum is
the process's own peak; a child that already exited would not be counted.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"
_TCP_LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10
_POLL_SECONDS = 0.02
_PORT_ATTEMPTS = 5
_HERE = Path(__file__).resolve().parent
PYNETDICOM_SCRIPT = _HERE / "pynetdicom_raw_scp.py"
FLOOR_SCRIPT = _HERE / "floor_scp.py"


@dataclass(frozen=True)
class ReceiverKind:
    name: str
    label: str
    # True when the receiver promises the data-set bytes exactly as sent.
    byte_identical: bool
    # True when the stored files sit next to files that are not DICOM (Orthanc).
    ignores_non_dicom: bool = False
    # False for variants run only when named in --receivers (they lengthen a run).
    default: bool = True


RECEIVERS: dict[str, ReceiverKind] = {
    kind.name: kind
    for kind in (
        ReceiverKind("dcmtk-B", "DCMTK storescp +B", byte_identical=True),
        ReceiverKind("dcmtk", "DCMTK storescp", byte_identical=False),
        ReceiverKind("aiodicom", "aiodicom storescp", byte_identical=True),
        ReceiverKind("aiodicom-fsync", "aiodicom storescp --fsync", byte_identical=True),
        ReceiverKind("aiodicom-w2", "aiodicom storescp --workers 2", byte_identical=True),
        ReceiverKind(
            "aiodicom-fsync-w2", "aiodicom storescp --fsync --workers 2", byte_identical=True
        ),
        ReceiverKind(
            "aiodicom-uvloop",
            "aiodicom storescp --event-loop uvloop",
            byte_identical=True,
            default=False,
        ),
        ReceiverKind("pynetdicom-raw", "pynetdicom, raw encoded_dataset()", byte_identical=True),
        # A reference, not a product: the least work a Python receiver can do per file.
        ReceiverKind(
            "python-floor", "bare asyncio receiver (reference)", byte_identical=True, default=False
        ),
        ReceiverKind(
            "orthanc", "Orthanc (fsync, index)", byte_identical=False, ignores_non_dicom=True
        ),
    )
}
ORTHANC_INSTALL_HINT = "Orthanc is not installed: apt-get install -y orthanc"


def missing_reason(name: str) -> str | None:
    """Why receiver ``name`` cannot run here, or None when it can."""
    if name in ("dcmtk", "dcmtk-B") and shutil.which("storescp") is None:
        return "DCMTK storescp is not installed: apt-get install -y dcmtk"
    if name == "pynetdicom-raw":
        try:
            import pynetdicom  # noqa: F401
        except ImportError:
            return "pynetdicom is not installed: pip install pynetdicom"
    if name == "aiodicom-uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop is not installed: pip install uvloop"
    if name == "orthanc" and shutil.which("Orthanc") is None:
        return ORTHANC_INSTALL_HINT
    return None


def free_port() -> int:
    """A port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def listening_ports() -> set[int]:
    """Ports in LISTEN state on this machine, from /proc/net/tcp and tcp6."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _stat_fields(stat: str) -> list[str]:
    """The fields of a ``/proc/PID/stat`` line from field 3 on. The command name (field
    2) may hold spaces, so the line is split after its closing parenthesis."""
    return stat.rsplit(")", 1)[1].split()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(_stat_fields(stat)[1])  # field 4: the parent pid
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        for child in children.get(current, []):
            found.append(child)
            pending.append(child)
    return found


def _tree_files(pid: int, name: str) -> Iterator[str]:
    """``/proc/<member>/<name>`` of ``pid`` and each living descendant that can be read."""
    for member in [pid, *_descendants(pid)]:
        try:
            yield Path(f"/proc/{member}/{name}").read_text()
        except OSError:
            continue


def peak_rss_bytes(pid: int) -> int:
    """Sum of VmHWM over ``pid`` and its living descendants (0 if none is readable)."""
    total = 0
    for status in _tree_files(pid, "status"):
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024  # the kernel reports kB
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its living descendants, all threads
    included (``/proc/PID/stat`` fields 14 and 15); 0 for what cannot be read."""
    ticks = 0
    for stat in _tree_files(pid, "stat"):
        fields = _stat_fields(stat)
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class RunningReceiver:
    """A started receiver: where it listens, where it stores, how to stop it."""

    kind: ReceiverKind
    process: subprocess.Popen[str]
    port: int
    stored_dir: Path
    log_path: Path
    http_port: int | None = None
    _log: IO[str] | None = field(default=None, repr=False)
    output: str = ""

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def instance_count(self) -> int | None:
        """Instances Orthanc says it stored (its REST API), None for other receivers."""
        if self.http_port is None:
            return None
        # An opener without proxies: the request must go to our loopback port.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://{LOOPBACK}:{self.http_port}/statistics"
        with opener.open(url, timeout=30) as response:
            return int(json.load(response)["CountInstances"])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (each receiver's clean stop), SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            stdout, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, _ = self.process.communicate(timeout=timeout)
        self.output += stdout or ""
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        return "\n".join((self.output + text).splitlines()[-lines:])

    def __enter__(self) -> RunningReceiver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class ReceiverStartError(RuntimeError):
    pass


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """The first stdout line, waiting at most until ``deadline``."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    collected = b""
    while b"\n" not in collected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([descriptor], [], [], remaining)
        if not ready:
            break
        # One byte at a time so nothing after the line is taken from the text stream.
        byte = os.read(descriptor, 1)
        if not byte:
            break
        collected += byte
    return collected.decode(errors="replace")


def _wait_listening(process: subprocess.Popen[str], ports: list[int], deadline: float) -> bool:
    """True once every port is LISTEN; False if the process exited or time ran out."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if set(ports) <= listening_ports():
            return True
        time.sleep(_POLL_SECONDS)
    return False


def dcmtk_environment(*, nagle: bool) -> dict[str, str]:
    """This environment with DCMTK's Nagle switch set for every process of a cell.

    DCMTK's network layer (libdcmnet, which Orthanc uses too) reads ``TCP_NODELAY``
    from the environment; Debian's 3.6.7 build leaves Nagle's algorithm on without it.
    It matters on both ends: a receiver with Nagle on delays its small C-STORE-RSP
    until the sender's delayed ACK (~40 ms a file), whatever the sender does. So a
    cell runs either all with ``TCP_NODELAY=1`` (as a tuned site would) or all with
    DCMTK's defaults (``nagle=True``). aiodicom and pynetdicom ignore the variable.
    """
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if nagle:
        environment.pop("TCP_NODELAY", None)
    else:
        environment["TCP_NODELAY"] = "1"
    return environment


def let_receivers_stop_on_sigint() -> None:
    """Make sure the receivers started from here will obey the SIGINT that stops them.

    A shell that runs a command in the background without job control (``cmd &`` in a
    script) starts it with SIGINT ignored, and an ignored signal stays ignored across
    exec: DCMTK storescp would then shrug off every stop and be killed after the timeout.
    A handled signal is reset to its default in the child, so handling it here is enough.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _popen(
    command: list[str], log: IO[str], environment: dict[str, str], *, stdout_pipe: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_pipe else log,
        stderr=log,
        text=True,
        env=environment,
    )


def _start_aiodicom(
    kind: ReceiverKind,
    stored: Path,
    log_path: Path,
    environment: dict[str, str],
    deadline: float,
) -> RunningReceiver:
    command = [sys.executable, "-m", "aiodicom", "storescp", "--bind", LOOPBACK, "-q"]
    if "fsync" in kind.name:
        command.append("--fsync")
    if kind.name.endswith("-w2"):
        command += ["--workers", "2"]
    if kind.name.endswith("-uvloop"):
        command += ["--event-loop", "uvloop"]
    command += ["-od", str(stored), "0"]
    log = log_path.open("w")
    process = _popen(command, log, environment, stdout_pipe=True)
    line = _read_line(process, deadline)
    marker = "listening on port "
    if marker not in line:
        process.kill()
        process.communicate(timeout=30)
        log.close()
        stderr = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise ReceiverStartError(
            f"aiodicom did not announce its port: {line!r} {' | '.join(stderr)}"
        )
    port = int(line.rsplit(marker, 1)[1].split()[0])
    return RunningReceiver(kind, process, port, stored, log_path, _log=log)


def _orthanc_config(folder: Path, dicom_port: int, http_port: int) -> Path:
    config = {
        "Name": "aiodicom-bench",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        # Orthanc's default, written out: fsync every stored file.
        "SyncStorageArea": True,
        "StorageCompression": False,
        "Plugins": [],
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def start_receiver(
    name: str, scratch: Path, *, nagle: bool = False, timeout: float = 60.0
) -> RunningReceiver:
    """Start receiver ``name`` storing under ``scratch`` (created); wait until it listens.

    ``nagle``: run with DCMTK's default Nagle setting (see :func:`dcmtk_environment`).
    """
    kind = RECEIVERS[name]
    scratch.mkdir(parents=True, exist_ok=True)
    stored = scratch / "received"
    stored.mkdir(exist_ok=True)
    log_path = scratch / "receiver.log"
    deadline = time.monotonic() + timeout
    environment = dcmtk_environment(nagle=nagle)
    if name.startswith("aiodicom"):
        return _start_aiodicom(kind, stored, log_path, environment, deadline)
    for _attempt in range(_PORT_ATTEMPTS):
        log = log_path.open("w")
        port = free_port()
        http_port: int | None = None
        if name in ("dcmtk", "dcmtk-B"):
            # +xa: accept every transfer syntax; +B: write the data set bit for bit.
            command = [str(shutil.which("storescp")), "+xa", "-od", str(stored)]
            if name == "dcmtk-B":
                command.append("+B")
            command.append(str(port))
        elif name == "pynetdicom-raw":
            command = [sys.executable, str(PYNETDICOM_SCRIPT), str(port), str(stored)]
        elif name == "python-floor":
            command = [sys.executable, str(FLOOR_SCRIPT), str(port), str(stored)]
        elif name == "orthanc":
            http_port = free_port()
            while http_port == port:
                http_port = free_port()
            config = _orthanc_config(scratch, port, http_port)
            stored = scratch / "storage"
            command = [str(shutil.which("Orthanc")), str(config)]
        else:
            raise ValueError(f"unknown receiver {name!r}")
        process = _popen(command, log, environment)
        ports = [port] if http_port is None else [port, http_port]
        if _wait_listening(process, ports, deadline):
            return RunningReceiver(kind, process, port, stored, log_path, http_port, _log=log)
        running = RunningReceiver(kind, process, port, stored, log_path, _log=log)
        running.stop(timeout=10)
        if time.monotonic() >= deadline:
            break
    raise ReceiverStartError(f"{kind.label} did not start listening:\n{running.log_tail()}")

"""The ``aiodicom`` command line: ``aiodicom storescp [options] PORT``,
``aiodicom echoscu [options] HOST PORT`` and ``aiodicom storescu [options] HOST PORT PATH...``.

Options follow DCMTK's storescp, echoscu and storescu where one exists (``-aet``,
``-aec``, ``-od``, ``-pdu``, ``-to``, ``-ta``, ``-td``, ``-v``, ``-d``), so people can type
what they already know.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from . import __version__
from .client import DEFAULT_WINDOW, associate, store_files
from .protocol.dimse import status_category
from .protocol.negotiation import DEFAULT_MAX_PDU_LENGTH
from .scp import SCPConfig, StoreSCP, serve_until_signalled
from .scp_session import STORED_LOGGER_NAME
from .scu_files import (
    ClientError,
    DicomFile,
    NotDicomFileError,
    StoreResult,
    find_files,
    read_dicom_file,
)
from .storage import DuplicatePolicy, StorageSortKey
from .tls import client_context, server_context
from .workers import run_workers, summary_line

logger = logging.getLogger("aiodicom.cli")
# One log line format for every command.
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _positive_seconds(text: str) -> float | None:
    """A timeout in seconds; 0 means none."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a timeout cannot be negative")
    return value or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiodicom", description="aiodicom: an asyncio-native DICOM network stack"
    )
    parser.add_argument("--version", action="version", version=f"aiodicom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    scp = commands.add_parser(
        "storescp",
        help="receive DICOM files (C-STORE) and store them on disk",
        description=(
            "A DICOM Storage SCP. Answers C-ECHO and stores every data set it receives "
            "as a DICOM file under the output directory, byte for byte as received."
        ),
    )
    scp.add_argument("port", type=int, help="TCP port to listen on (0: any free port)")
    scp.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="address to listen on")
    scp.add_argument("-aet", "--aetitle", default="AIODICOM", help="our AE title")
    scp.add_argument(
        "-od", "--output-directory", default=".", metavar="DIR", help="where files are stored"
    )
    scp.add_argument(
        "--sort-by",
        default=StorageSortKey.PATIENT.value,
        choices=[key.value for key in StorageSortKey],
        type=str.upper,
        help="folder layout: PATIENT (PatientID/Study/Series/SOP.dcm, default), "
        "STUDY, SERIES or IMAGE",
    )
    scp.add_argument(
        "-pdu",
        "--max-pdu",
        type=int,
        default=SCPConfig.max_pdu_length,
        metavar="BYTES",
        help="largest P-DATA-TF PDU we accept (our Maximum Length)",
    )
    scp.add_argument(
        "-ta",
        "--acse-timeout",
        type=_positive_seconds,
        default=SCPConfig.artim_timeout,
        metavar="SECONDS",
        help="ARTIM: wait for association requests and closes (0: none)",
    )
    scp.add_argument(
        "-td",
        "--dimse-timeout",
        type=_positive_seconds,
        default=SCPConfig.dimse_timeout,
        metavar="SECONDS",
        help="wait for the rest of a message being received (0: none)",
    )
    scp.add_argument(
        "--idle-timeout",
        type=_positive_seconds,
        default=SCPConfig.idle_timeout,
        metavar="SECONDS",
        help="wait for the next message on an idle association (0: none)",
    )
    scp.add_argument(
        "--max-associations",
        type=int,
        default=SCPConfig.max_associations,
        help="associations served at once; more are refused (A-ASSOCIATE-RJ 2/3/2)",
    )
    scp.add_argument(
        "--require-called-aet",
        action="store_true",
        help="refuse associations whose called AE title is not ours",
    )
    scp.add_argument(
        "--allow-calling-aet",
        action="append",
        default=None,
        metavar="AET",
        help="accept only this calling AE title (repeat for several)",
    )
    scp.add_argument(
        "--accept-any-sop-class",
        action="store_true",
        help="accept any SOP class, not only Verification and storage classes",
    )
    _add_event_loop_argument(scp)
    scp.add_argument(
        "--fsync",
        action="store_true",
        help="fsync each file and its directory before answering success (durable, slower)",
    )
    scp.add_argument(
        "--duplicates",
        default=DuplicatePolicy.REPLACE.value,
        choices=[policy.value for policy in DuplicatePolicy],
        help="what a second copy of a stored SOP Instance UID does (default: replace)",
    )
    verbosity = scp.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log every stored file")
    verbosity.add_argument("-d", "--debug", action="store_true", help="debug logging")
    scp.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    scp.add_argument(
        "--allow-network",
        action="append",
        default=None,
        metavar="CIDR",
        help="accept peers from this network only, e.g. 10.1.0.0/16 (repeat for several)",
    )
    tls = scp.add_argument_group("DICOM TLS (PS3.15 B.9, BCP 195)")
    tls.add_argument("--tls-cert", metavar="PEM", help="our certificate (enables TLS)")
    tls.add_argument("--tls-key", metavar="PEM", help="our private key (if not in --tls-cert)")
    tls.add_argument("--tls-ca", metavar="PEM", help="CA certificates to verify peers with")
    tls.add_argument(
        "--tls-require-client-cert",
        action="store_true",
        help="refuse peers without a certificate signed by --tls-ca",
    )
    scp.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes share the port (SO_REUSEPORT), for multi-core machines",
    )
    # Used by --workers for its children; not for people.
    scp.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    scp.add_argument("--no-cleanup", action="store_true", help=argparse.SUPPRESS)
    # The port --workers bound (the command line's may be 0): it replaces PORT.
    scp.add_argument("--bound-port", type=int, default=None, help=argparse.SUPPRESS)
    _add_scu_parsers(commands)
    return parser


def _configure_logging(arguments: argparse.Namespace) -> None:
    level = logging.INFO
    if arguments.debug:
        level = logging.DEBUG
    elif arguments.quiet:
        level = logging.WARNING
    logging.basicConfig(level=level, format=_LOG_FORMAT, stream=sys.stderr)
    if not (arguments.verbose or arguments.debug):
        # Associations, problems and the summary by default; a line per file with -v.
        logging.getLogger(STORED_LOGGER_NAME).setLevel(logging.WARNING)


async def _run_storescp(arguments: argparse.Namespace) -> int:
    config = SCPConfig(
        max_associations=arguments.max_associations,
        artim_timeout=arguments.acse_timeout,
        dimse_timeout=arguments.dimse_timeout,
        idle_timeout=arguments.idle_timeout,
        require_called_ae_title=arguments.require_called_aet,
        allowed_calling_ae_titles=(
            frozenset(arguments.allow_calling_aet) if arguments.allow_calling_aet else None
        ),
        accept_any_sop_class=arguments.accept_any_sop_class,
        max_pdu_length=arguments.max_pdu,
        fsync=arguments.fsync,
        duplicates=DuplicatePolicy(arguments.duplicates),
        allowed_networks=tuple(arguments.allow_network) if arguments.allow_network else None,
        ssl_context=_server_tls_context(arguments),
        reuse_port=arguments.reuse_port,
        cleanup_on_start=not arguments.no_cleanup,
    )
    scp = StoreSCP(
        ae_title=arguments.aetitle,
        host=arguments.bind,
        port=arguments.port if arguments.bound_port is None else arguments.bound_port,
        data_dir=arguments.output_directory,
        sort_by=arguments.sort_by,
        config=config,
    )

    def announce(server: StoreSCP) -> None:
        print(f"aiodicom storescp: {server.ae_title} listening on port {server.port}", flush=True)
        loop_module = type(asyncio.get_running_loop()).__module__
        logger.info("event loop: %s", loop_module.partition(".")[0])

    await serve_until_signalled(scp, on_started=announce)
    stats = scp.stats
    print(
        summary_line(
            stats.stored,
            stats.failed_stores,
            stats.echoes,
            stats.associations,
            stats.rejected_associations,
            stats.aborted_associations,
        ),
        flush=True,
    )
    return 0


def _server_tls_context(arguments: argparse.Namespace) -> ssl.SSLContext | None:
    if arguments.tls_cert is None:
        if arguments.tls_key or arguments.tls_ca or arguments.tls_require_client_cert:
            raise SystemExit("aiodicom storescp: the TLS options need --tls-cert")
        return None
    return server_context(
        arguments.tls_cert,
        arguments.tls_key,
        cafile=arguments.tls_ca,
        require_client_certificate=arguments.tls_require_client_cert,
    )


def _worker_arguments(argv: Sequence[str]) -> list[str]:
    """The storescp command line minus the subcommand and ``--workers N``.

    The port stays: each worker gets ``--bound-port`` as well, which wins over it.
    """
    arguments = list(argv)
    arguments.remove("storescp")
    for index, argument in enumerate(arguments):
        if argument == "--workers":
            del arguments[index : index + 2]
            break
        if argument.startswith("--workers="):
            del arguments[index]
            break
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command in ("echoscu", "storescu"):
        return _run_scu_command(arguments)
    _configure_logging(arguments)
    if arguments.command == "storescp" and arguments.workers > 1:
        return run_workers(
            _worker_arguments(sys.argv[1:] if argv is None else argv),
            workers=arguments.workers,
            host=arguments.bind,
            port=arguments.port,
            data_dir=Path(arguments.output_directory),
            ae_title=arguments.aetitle,
        )
    if arguments.command == "storescp":
        backend_options = _backend_options(arguments)
        try:
            return anyio.run(_run_storescp, arguments, backend_options=backend_options)
        except KeyboardInterrupt:
            return 130
        except OSError as error:
            print(f"aiodicom storescp: {error}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {arguments.command}")
    return 2


# --- echoscu and storescu -----------------------------------------------------------------------


def _add_scu_parsers(commands: Any) -> None:
    echo = commands.add_parser(
        "echoscu",
        help="check that a DICOM peer answers (C-ECHO)",
        description="A Verification SCU: opens an association, sends C-ECHO, releases.",
    )
    _add_peer_arguments(echo)
    echo.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="send N echoes on the association"
    )
    _add_scu_verbosity(echo)
    _add_event_loop_argument(echo)

    store = commands.add_parser(
        "storescu",
        help="send DICOM files (C-STORE) to a peer",
        description=(
            "A Storage SCU. Sends each DICOM file as it is on disk, in its own transfer "
            "syntax (no transcoding), on contexts proposed from the files themselves. "
            "Files that are not DICOM are skipped and listed. Exit status: 0 when every "
            "DICOM file was stored (success or warning), 1 when any failed or none could "
            "be sent, 2 when the command itself cannot run."
        ),
    )
    _add_peer_arguments(store)
    store.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    store.add_argument("-r", "--recursive", action="store_true", help="descend into subdirectories")
    store.add_argument(
        "--associations",
        type=_positive_int,
        default=1,
        metavar="N",
        help="associations to send over at once (default 1)",
    )
    store.add_argument(
        "--window",
        type=_positive_int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help=(
            f"asynchronous operations window to propose (default {DEFAULT_WINDOW}): up to N "
            "C-STORE requests outstanding when the peer accepts; peers that do not answer "
            "a window get one at a time; 1 never pipelines"
        ),
    )
    store.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    _add_scu_verbosity(store)
    _add_event_loop_argument(store)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_peer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", help="the peer's host name or address")
    parser.add_argument("port", type=int, help="the peer's TCP port")
    parser.add_argument("-aet", "--aetitle", default="AIODICOM", help="our (calling) AE title")
    parser.add_argument(
        "-aec", "--call", default="ANY-SCP", metavar="AET", help="the peer's (called) AE title"
    )
    parser.add_argument(
        "-pdu",
        "--max-pdu",
        type=int,
        default=DEFAULT_MAX_PDU_LENGTH,
        metavar="BYTES",
        help="largest P-DATA-TF PDU we accept (our Maximum Length)",
    )
    parser.add_argument(
        "-to",
        "--connect-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="wait for the TCP connection (0: none)",
    )
    parser.add_argument(
        "-ta",
        "--acse-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="wait for association accept/release answers (0: none)",
    )
    parser.add_argument(
        "-td",
        "--dimse-timeout",
        type=_positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="wait for a response, or for the peer to take our data (0: none)",
    )
    tls = parser.add_argument_group("DICOM TLS (PS3.15 B.9, BCP 195)")
    tls.add_argument(
        "--tls", action="store_true", help="use TLS, trusting the system's CA certificates"
    )
    tls.add_argument(
        "--tls-ca", metavar="PEM", help="use TLS, trusting these CA certificates (implies --tls)"
    )
    tls.add_argument("--tls-cert", metavar="PEM", help="our certificate, for peers that ask")
    tls.add_argument("--tls-key", metavar="PEM", help="our private key (if not in --tls-cert)")


def _add_scu_verbosity(parser: argparse.ArgumentParser) -> None:
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log associations")
    verbosity.add_argument("-d", "--debug", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="errors only")


def _run_scu_command(arguments: argparse.Namespace) -> int:
    # Quiet by default: the summary says what happened; -v/-d add the protocol's story.
    level = logging.WARNING
    if arguments.debug:
        level = logging.DEBUG
    elif arguments.verbose:
        level = logging.INFO
    elif arguments.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format=_LOG_FORMAT, stream=sys.stderr)
    name = f"aiodicom {arguments.command}"
    # Loaded before the loop starts: a bad file is a usage error (exit 2), not a crash.
    arguments.ssl_context = _client_tls_context(arguments)
    runner = _run_echoscu if arguments.command == "echoscu" else _run_storescu
    backend_options = _backend_options(arguments)
    try:
        return anyio.run(runner, arguments, backend_options=backend_options)
    except KeyboardInterrupt:
        return 130
    except (ClientError, OSError, TimeoutError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2


def _add_event_loop_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the event loop to run on (default asyncio: its socket reads hand over the "
        "received bytes without the extra copy uvloop makes; uvloop must be installed)",
    )


def _backend_options(arguments: argparse.Namespace) -> dict[str, object]:
    """anyio's backend options for ``--event-loop``; a usage error (exit 2) when the
    chosen loop is not installed."""
    if arguments.event_loop == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        _usage_error(arguments, "uvloop is not installed (pip install uvloop)")
    return {"use_uvloop": True}


def _association_options(arguments: argparse.Namespace) -> dict[str, Any]:
    return {
        "called_ae": arguments.call,
        "calling_ae": arguments.aetitle,
        "max_pdu": arguments.max_pdu,
        "connect_timeout": arguments.connect_timeout,
        "acse_timeout": arguments.acse_timeout,
        "dimse_timeout": arguments.dimse_timeout,
        "ssl_context": arguments.ssl_context,
    }


def _client_tls_context(arguments: argparse.Namespace) -> ssl.SSLContext | None:
    """The SCU's TLS context from --tls/--tls-ca/--tls-cert/--tls-key, or None."""
    if not (arguments.tls or arguments.tls_ca):
        if arguments.tls_cert or arguments.tls_key:
            _usage_error(arguments, "--tls-cert/--tls-key need --tls or --tls-ca")
        return None
    if arguments.tls_key and not arguments.tls_cert:
        _usage_error(arguments, "--tls-key needs --tls-cert")
    try:
        return client_context(
            cafile=arguments.tls_ca, certfile=arguments.tls_cert, keyfile=arguments.tls_key
        )
    except (OSError, ssl.SSLError) as error:
        _usage_error(arguments, f"cannot load TLS files: {error}")


def _usage_error(arguments: argparse.Namespace, message: str) -> NoReturn:
    print(f"aiodicom {arguments.command}: {message}", file=sys.stderr)
    raise SystemExit(2)


async def _run_echoscu(arguments: argparse.Namespace) -> int:
    failures = 0
    async with associate(arguments.host, arguments.port, **_association_options(arguments)) as peer:
        for _ in range(arguments.repeat):
            started = anyio.current_time()
            status = await peer.echo()
            elapsed = (anyio.current_time() - started) * 1000
            category = status_category(status)
            if category != "success":
                failures += 1
            if not arguments.quiet:
                print(
                    f"aiodicom echoscu: {arguments.call} at {arguments.host}:{arguments.port} "
                    f"answered 0x{status:04X} ({category}) in {elapsed:.1f} ms",
                    flush=True,
                )
    return 1 if failures else 0


async def _run_storescu(arguments: argparse.Namespace) -> int:
    name = "aiodicom storescu"
    paths = find_files(arguments.paths, recursive=arguments.recursive)

    def read_all() -> tuple[list[DicomFile], list[tuple[Path, str]]]:
        readable: list[DicomFile] = []
        skipped: list[tuple[Path, str]] = []
        for path in paths:
            try:
                readable.append(read_dicom_file(path))
            except (NotDicomFileError, OSError) as error:
                skipped.append((path, getattr(error, "reason", None) or str(error)))
        return readable, skipped

    files, skipped = await anyio.to_thread.run_sync(read_all)
    progress = _Progress(
        total_files=len(files),
        total_bytes=sum(dicom_file.dataset_length for dicom_file in files),
        enabled=sys.stderr.isatty() and not arguments.no_progress and not arguments.quiet,
    )
    started = anyio.current_time()
    results = await store_files(
        arguments.host,
        arguments.port,
        files,
        associations=arguments.associations,
        window=arguments.window,
        on_result=progress.update,
        **_association_options(arguments),
    )
    progress.finish()
    elapsed = max(anyio.current_time() - started, 1e-9)
    stored = [result for result in results if result.ok]
    warnings = [
        result
        for result in stored
        if result.status is not None and status_category(result.status) == "warning"
    ]
    failed = [result for result in results if not result.ok]
    megabytes = sum(result.size for result in stored) / 1e6
    print(
        f"{name}: {len(stored)} sent ({len(warnings)} with warnings), {len(failed)} failed, "
        f"{len(skipped)} skipped (not DICOM); {megabytes:.1f} MB in {elapsed:.2f} s "
        f"({megabytes / elapsed:.1f} MB/s, {len(stored) / elapsed:.0f} files/s)",
        flush=True,
    )
    if failed:
        by_status: dict[str, int] = {}
        for result in failed:
            key = f"0x{result.status:04X}" if result.status is not None else "not sent"
            by_status[key] = by_status.get(key, 0) + 1
        print("failed: " + ", ".join(f"{count} {key}" for key, count in sorted(by_status.items())))
        for result in failed[:_LISTED_FAILURES]:
            if result.status is not None:
                reason = f"status 0x{result.status:04X} ({status_category(result.status)})"
                if result.error_comment:
                    reason += f": {result.error_comment}"
            else:
                reason = result.error or "not sent"
            print(f"  {result.path}: {reason}")
        if len(failed) > _LISTED_FAILURES:
            print(f"  ... and {len(failed) - _LISTED_FAILURES} more")
    for result in warnings:
        assert result.status is not None
        print(f"  warning 0x{result.status:04X}: {result.path}")
    if skipped:
        print("skipped (not DICOM):")
        for path, reason in skipped:
            print(f"  {path}: {reason}")
    return 1 if failed or not files else 0


_LISTED_FAILURES = 50


class _Progress:
    """A one-line progress bar on stderr (files, MB, MB/s), redrawn at most 10 times a
    second; silent when stderr is not a terminal."""

    def __init__(self, *, total_files: int, total_bytes: int, enabled: bool) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.enabled = enabled
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.last_drawn = 0.0

    def update(self, result: StoreResult) -> None:
        self.files += 1
        self.bytes += result.size
        now = time.monotonic()
        if self.enabled and (now - self.last_drawn >= 0.1 or self.files == self.total_files):
            self.last_drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = self.bytes / self.total_bytes if self.total_bytes else 1.0
        width = 30
        filled = int(width * min(fraction, 1.0))
        rate = self.bytes / 1e6 / max(now - self.started, 1e-9)
        sys.stderr.write(
            f"\r[{'#' * filled}{' ' * (width - filled)}] {self.files}/{self.total_files} files "
            f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB {rate:.1f} MB/s"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self.files:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()

"""The ``aiodicom`` command line: ``aiodicom storescp [options] PORT``.

Options follow DCMTK's storescp where one exists (``-aet``, ``-od``, ``-pdu``, ``-ta``,
``-td``, ``-v``, ``-d``), so people can type what they already know.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from . import __version__
from .scp import SCPConfig, StoreSCP, serve_until_signalled
from .storage import DuplicatePolicy, StorageSortKey

logger = logging.getLogger("aiodicom.cli")


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
    return parser


def _configure_logging(arguments: argparse.Namespace) -> None:
    level = logging.INFO
    if arguments.debug:
        level = logging.DEBUG
    elif arguments.quiet:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
    )
    scp = StoreSCP(
        ae_title=arguments.aetitle,
        host=arguments.bind,
        port=arguments.port,
        data_dir=arguments.output_directory,
        sort_by=arguments.sort_by,
        config=config,
    )

    def announce(server: StoreSCP) -> None:
        print(f"aiodicom storescp: {server.ae_title} listening on port {server.port}", flush=True)

    await serve_until_signalled(scp, on_started=announce)
    stats = scp.stats
    print(
        f"aiodicom storescp: {stats.stored} stored, {stats.failed_stores} failed, "
        f"{stats.echoes} echoes, {stats.associations} associations "
        f"({stats.rejected_associations} rejected, {stats.aborted_associations} aborted)",
        flush=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    _configure_logging(arguments)
    if arguments.command == "storescp":
        backend_options: dict[str, object] = {}
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            backend_options = {"use_uvloop": True}
        try:
            return anyio.run(_run_storescp, arguments, backend_options=backend_options)
        except KeyboardInterrupt:
            return 130
        except OSError as error:
            print(f"aiodicom storescp: {error}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {arguments.command}")
    return 2

"""Side-by-side Storage SCP benchmark: aiodicom against DCMTK, pynetdicom and Orthanc.

Run: ``python benchmarks/bench_receivers.py [--quick] [--runs 3] [--data DIR]
[--workloads small,ct,large,small16,small-nagle] [--out results/]``
(see ``benchmarks/README.md``).

Each cell of the table (workload x receiver) starts the receiver fresh on a free
loopback port, sends the workload with DCMTK ``storescu`` (one process per
association), and measures the senders' wall time (start to exit) and the receiver's
peak resident memory. Every received file is then checked against the sent one by
SOP Instance UID. Rounds alternate the receivers (ABCABC, not AAABBB) so that machine
noise is spread over all of them; each figure is the median of the rounds, with the
min-max range, and the ratio to DCMTK ``storescp +B`` is taken within each round.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receivers import datasets, launch, senders
from receivers.datasets import Workload
from receivers.integrity import DatasetDigest, check_received

WORKLOADS = ("small", "ct", "large", "small16", "small-nagle")
# Files per workload: full run, then --quick.
FULL_COUNTS = {"small": 2000, "ct": 300, "large": 2}
QUICK_COUNTS = {"small": 200, "ct": 30, "large": 2}
QUICK_LARGE_FRAMES = 16  # 8 MiB instead of 96 MiB
SMALL16_ASSOCIATIONS = 16
# With Nagle on, every receiver measured so far falls to ~20 small files/s: a bounded
# sample is enough to show it (see /work/shared/ANCHORS.md).
NAGLE_FILES = {False: 200, True: 40}  # keyed by --quick
REFERENCE = "dcmtk-B"
MEGABYTE = 1_000_000
MEBIBYTE = 1 << 20
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class CellRun:
    """One receiver receiving one workload once."""

    round_index: int
    seconds: float | None = None
    peak_rss_bytes: int | None = None
    # The receiver's CPU time (user + system) while the workload was sent.
    receiver_cpu_seconds: float | None = None
    integrity: str = ""
    ok: bool = False
    error: str | None = None
    orthanc_instances: int | None = None


@dataclass
class Cell:
    workload: str
    receiver: str
    runs: list[CellRun] = field(default_factory=list)


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sets, 1 round (a minute)")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 3; --quick 1)")
    parser.add_argument(
        "--data", type=Path, help="send your own Part 10 files (this folder, recursively)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, from {', '.join(WORKLOADS)} (ignored with --data)",
    )
    parser.add_argument(
        "--receivers",
        default=None,
        help=f"comma-separated, from {', '.join(launch.RECEIVERS)} "
        "(default: all installed but aiodicom-uvloop)",
    )
    parser.add_argument(
        "--orthanc", action="store_true", help="require Orthanc (fail if it is missing)"
    )
    parser.add_argument("--sender", choices=senders.SENDERS, default="dcmtk")
    parser.add_argument("--files", type=int, help="at most this many files per workload")
    parser.add_argument("--out", type=Path, default=Path("results"), help="result folder")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a send may take (per cell)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--scratch-dir",
        type=Path,
        default=None,
        help="where data and received files go (default: the system temp folder); e.g. "
        "/dev/shm to measure the receivers without the disk's own noise",
    )
    arguments = parser.parse_args(argv)
    if arguments.runs is None:
        arguments.runs = 1 if arguments.quick else 3
    if arguments.runs < 1:
        parser.error("--runs must be at least 1")
    return arguments


def _choose_receivers(arguments: argparse.Namespace) -> list[str]:
    if arguments.receivers:
        names = [name.strip() for name in arguments.receivers.split(",") if name.strip()]
        unknown = [name for name in names if name not in launch.RECEIVERS]
        if unknown:
            raise SystemExit(f"unknown receiver(s): {', '.join(unknown)}")
    else:
        names = [name for name, kind in launch.RECEIVERS.items() if kind.default]
    if arguments.orthanc and "orthanc" not in names:
        names.append("orthanc")
    chosen = []
    for name in names:
        reason = launch.missing_reason(name)
        if reason is None:
            chosen.append(name)
        elif name == "orthanc" and not arguments.orthanc and not arguments.receivers:
            print(f"skipping Orthanc: {reason} (then run with --orthanc)")
        else:
            raise SystemExit(f"cannot run receiver {name}: {reason}")
    return chosen


def _build_workloads(arguments: argparse.Namespace, data_dir: Path) -> list[Workload]:
    """Write (or scan) the data sets; every file is digested once, before any run."""
    cap = arguments.files

    def capped(count: int) -> int:
        return count if cap is None else min(count, cap)

    if arguments.data is not None:
        paths = datasets.scan_folder(arguments.data)
        if not paths:
            raise SystemExit(f"no DICOM Part 10 files under {arguments.data}")
        files = datasets.digest_all(paths[: capped(len(paths))])
        return [Workload("data", f"your {len(files)} files from {arguments.data}", files)]
    names = [name.strip() for name in arguments.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}")
    counts = QUICK_COUNTS if arguments.quick else FULL_COUNTS
    workloads = []
    small_files: tuple[DatasetDigest, ...] = ()
    if {"small", "small16", "small-nagle"} & set(names):
        needed = counts["small"]
        if names == ["small-nagle"]:
            needed = NAGLE_FILES[arguments.quick]
        paths = datasets.write_small(data_dir / "small", capped(needed))
        small_files = datasets.digest_all(paths)
    for name in names:
        if name == "small":
            workloads.append(
                Workload(name, f"{len(small_files)} x ~2 KB, 1 association", small_files)
            )
        elif name == "small16":
            workloads.append(
                Workload(
                    name,
                    f"{len(small_files)} x ~2 KB, {SMALL16_ASSOCIATIONS} associations",
                    small_files,
                    associations=SMALL16_ASSOCIATIONS,
                )
            )
        elif name == "small-nagle":
            sample = small_files[: NAGLE_FILES[arguments.quick]]
            workloads.append(
                Workload(
                    name,
                    f"{len(sample)} x ~2 KB, sender Nagle on (DCMTK default)",
                    sample,
                    nagle=True,
                )
            )
        elif name == "ct":
            files = datasets.digest_all(datasets.write_ct(data_dir / "ct", capped(counts["ct"])))
            workloads.append(Workload(name, f"{len(files)} x 512x512 16-bit CT", files))
        elif name == "large":
            frames = QUICK_LARGE_FRAMES if arguments.quick else datasets.LARGE_FRAMES
            paths = datasets.write_large(data_dir / "large", capped(counts["large"]), frames)
            files = datasets.digest_all(paths)
            size = files[0].file_size / MEGABYTE
            workloads.append(Workload(name, f"{len(files)} x {size:.0f} MB multi-frame", files))
    return workloads


def _measure(
    workload: Workload,
    receiver: str,
    round_index: int,
    scratch: Path,
    arguments: argparse.Namespace,
) -> CellRun:
    result = CellRun(round_index)
    kind = launch.RECEIVERS[receiver]
    try:
        running = launch.start_receiver(receiver, scratch, nagle=workload.nagle)
    except launch.ReceiverStartError as error:
        result.error = str(error)
        return result
    try:
        cpu_before = running.cpu_seconds()
        sent = senders.send(
            workload,
            running.port,
            sender=arguments.sender,
            log_dir=scratch / "senders",
            timeout=arguments.timeout,
        )
        result.seconds = sent.seconds
        result.receiver_cpu_seconds = running.cpu_seconds() - cpu_before
        if sent.failures:
            result.error = "; ".join(sent.failures)
        if running.http_port is not None:
            result.orthanc_instances = running.instance_count()
        # Read before the stop: the peak of the receiving, not of the shutdown.
        result.peak_rss_bytes = running.peak_rss_bytes()
    finally:
        status = running.stop()
    # 0: a clean stop; -SIGINT: DCMTK storescp dies by the signal, as it is meant to.
    if status not in (0, -signal.SIGINT) and result.error is None:
        result.error = f"receiver exited with {status}: {running.log_tail(5)}"
    report = check_received(
        workload.files,
        running.stored_dir,
        require_identical=kind.byte_identical,
        ignore_non_dicom=kind.ignores_non_dicom,
    )
    result.integrity = report.summary()
    result.ok = report.ok and result.error is None
    _release_received(running.stored_dir)
    if result.orthanc_instances is not None:
        result.integrity += f"; Orthanc /statistics: {result.orthanc_instances} instances"
        result.ok = result.ok and result.orthanc_instances == len(workload.files)
    return result


def _median_and_range(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def summarise(
    cells: dict[tuple[str, str], Cell], workloads: Sequence[Workload]
) -> list[dict[str, Any]]:
    """One row per cell: medians, ranges, and the ratio to DCMTK +B within each round."""
    sizes = {workload.name: workload for workload in workloads}
    rows = []
    for (workload_name, receiver), cell in cells.items():
        workload = sizes[workload_name]
        timed = [run for run in cell.runs if run.seconds and run.error is None]
        row: dict[str, Any] = {
            "workload": workload_name,
            "receiver": receiver,
            "label": launch.RECEIVERS[receiver].label,
            "files": len(workload.files),
            "bytes": workload.total_bytes,
            "runs": len(cell.runs),
            "intact": all(run.ok for run in cell.runs),
            "integrity": sorted({run.integrity for run in cell.runs}),
            "errors": [run.error for run in cell.runs if run.error],
        }
        if timed:
            rates = [len(workload.files) / run.seconds for run in timed if run.seconds]
            row["files_per_second"] = _median_and_range(rates)
            row["megabytes_per_second"] = _median_and_range(
                [rate * workload.total_bytes / len(workload.files) / MEGABYTE for rate in rates]
            )
            peaks = [run.peak_rss_bytes / MEBIBYTE for run in timed if run.peak_rss_bytes]
            row["peak_rss_mib"] = _median_and_range(peaks) if peaks else None
            cpu = [
                run.receiver_cpu_seconds * 1e6 / len(workload.files)
                for run in timed
                if run.receiver_cpu_seconds is not None
            ]
            row["receiver_cpu_us_per_file"] = _median_and_range(cpu) if cpu else None
        reference = cells.get((workload_name, REFERENCE))
        if reference is not None and timed:
            reference_seconds = {
                run.round_index: run.seconds
                for run in reference.runs
                if run.seconds and run.error is None
            }
            ratios = [
                seconds / run.seconds
                for run in timed
                if run.seconds and (seconds := reference_seconds.get(run.round_index))
            ]
            if ratios:
                row["ratio_to_dcmtk_B"] = _median_and_range(ratios)
        rows.append(row)
    return rows


def _format_range(triple: Sequence[float] | None, digits: int = 0, wide: float = 0.15) -> str:
    """``median`` and, when the spread is wider than ``wide`` of it, ``(min-max)``."""
    if not triple:
        return "-"
    median, low, high = triple
    text = f"{median:,.{digits}f}"
    if median and (high - low) / median > wide:
        text += f" ({low:,.{digits}f}-{high:,.{digits}f})"
    return text


def _digits(triple: Sequence[float] | None) -> int:
    """Decimals enough to tell 2 large files/s from 5 (0 from 20 files/s up)."""
    return 0 if not triple or triple[0] >= 20 else 1


def format_table(rows: Sequence[dict[str, Any]], workloads: Sequence[Workload]) -> str:
    lines = [
        "| workload | receiver | files/s | MB/s | peak RSS MiB | CPU µs/file | x DCMTK +B "
        "| intact |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {workload.name: index for index, workload in enumerate(workloads)}
    receivers = list(launch.RECEIVERS)
    for row in sorted(rows, key=lambda r: (order[r["workload"]], receivers.index(r["receiver"]))):
        ratio = row.get("ratio_to_dcmtk_B")
        lines.append(
            "| {workload} | {label} | {fps} | {mbps} | {rss} | {cpu} | {ratio} | {intact} |".format(
                workload=row["workload"],
                label=row["label"],
                fps=_format_range(
                    row.get("files_per_second"), _digits(row.get("files_per_second"))
                ),
                mbps=_format_range(row.get("megabytes_per_second"), 1),
                rss=_format_range(row.get("peak_rss_mib")),
                cpu=_format_range(row.get("receiver_cpu_us_per_file")),
                ratio=_format_range(ratio, 2) if ratio else "-",
                intact="yes" if row["intact"] else "NO",
            )
        )
    return "\n".join(lines)


def _fsync_comparison(rows: Sequence[dict[str, Any]]) -> list[str]:
    """aiodicom --fsync against Orthanc (both durable), per workload, from the medians."""
    by_key = {(row["workload"], row["receiver"]): row for row in rows}
    lines = []
    for (workload, receiver), row in by_key.items():
        orthanc = by_key.get((workload, "orthanc"))
        if receiver != "aiodicom-fsync" or orthanc is None:
            continue
        ours, theirs = row.get("files_per_second"), orthanc.get("files_per_second")
        if ours and theirs:
            lines.append(f"{workload}: aiodicom --fsync / Orthanc = {ours[0] / theirs[0]:.2f}x")
    return lines


def _tool_version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _uncommitted_sources() -> list[str] | None:
    """Files under src/ that differ from the commit measured ([] clean, None unknown)."""
    command = ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--", "src"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.splitlines() if result.returncode == 0 else None


def _environment(arguments: argparse.Namespace, receivers: Sequence[str]) -> dict[str, Any]:
    import pydicom

    facts: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pydicom": pydicom.__version__,
        "aiodicom_commit": _tool_version(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"]),
        "aiodicom_uncommitted": _uncommitted_sources(),
        "load_average_at_end": os.getloadavg(),
        "sender": arguments.sender,
        "scratch_dir": str(arguments.scratch_dir or tempfile.gettempdir()),
    }
    try:
        # Used by the aiodicom-uvloop receiver (--event-loop uvloop) only.
        facts["uvloop"] = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        facts["uvloop"] = None
    if shutil.which("storescp"):
        facts["dcmtk"] = _tool_version(["storescp", "--version"])
    if "pynetdicom-raw" in receivers:
        import pynetdicom

        facts["pynetdicom"] = pynetdicom.__version__
    if "orthanc" in receivers:
        facts["orthanc"] = _tool_version(["Orthanc", "--version"])
    return facts


def _plot(rows: Sequence[dict[str, Any]], workloads: Sequence[Workload], path: Path) -> str:
    """A grouped bar chart of the ratio to DCMTK +B; matplotlib is optional."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    receivers = [name for name in launch.RECEIVERS if any(r["receiver"] == name for r in rows)]
    by_key = {(row["workload"], row["receiver"]): row for row in rows}
    figure, axes = pyplot.subplots(figsize=(max(6.0, 1.6 * len(workloads) + 2), 4.5))
    width = 0.8 / max(1, len(receivers))
    for index, receiver in enumerate(receivers):
        heights = []
        for workload in workloads:
            ratio = by_key.get((workload.name, receiver), {}).get("ratio_to_dcmtk_B")
            heights.append(ratio[0] if ratio else float("nan"))  # NaN: no bar
        positions = [
            slot + (index - (len(receivers) - 1) / 2) * width for slot in range(len(workloads))
        ]
        bars = axes.bar(positions, heights, width, label=launch.RECEIVERS[receiver].label)
        labels = [f"{height:.2f}" if height == height else "" for height in heights]
        axes.bar_label(bars, labels=labels, fontsize=6, padding=1)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(workloads)), [workload.name for workload in workloads])
    axes.set_ylabel("ratio to DCMTK +B, same round (log)")
    axes.set_title("Storage SCP throughput relative to DCMTK storescp +B (median)")
    # Log scale: the Nagle workload's ratios (~100x) would flatten every other bar.
    axes.set_yscale("log")
    axes.set_ylim(top=axes.get_ylim()[1] * 2)  # room for the bar labels
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return f"plot: {path}"


def _release_received(stored_dir: Path) -> None:
    """Truncate every file a receiver stored in a cell, once they have been checked.

    Two quirks of this project's test machine (a virtual machine with ext4 without a
    journal) made deleting them, or keeping them, part of what was measured:

    * deleting thousands of files slowed every file creation for ~30 s after (the
      kernel skips each recently freed inode on every create: ``recently_deleted()``,
      seen with ``perf``; creating an empty file took 400-800 us instead of 12-20 us);
    * keeping them made every later cell take never-used memory for the page cache,
      and receivers that allocate per data set (every one but DCMTK ``+B``) slowed by
      up to 2-3x on large data sets, on tmpfs as on ext4.

    Truncating frees the data (and its memory) and keeps the inodes; the files are
    deleted when the run ends.
    """
    for directory, _, names in os.walk(stored_dir):
        for name in names:
            try:
                os.truncate(os.path.join(directory, name), 0)
            except OSError:
                continue


def run(arguments: argparse.Namespace) -> int:
    receivers = _choose_receivers(arguments)
    sender_problem = senders.missing_reason(arguments.sender)
    if sender_problem:
        raise SystemExit(f"cannot use sender {arguments.sender}: {sender_problem}")
    scratch = Path(tempfile.mkdtemp(prefix="aiodicom-bench-", dir=arguments.scratch_dir))
    try:
        started = time.monotonic()
        load_at_start = os.getloadavg()
        workloads = _build_workloads(arguments, scratch / "data")
        if arguments.sender != "dcmtk":
            # Nagle on is a property of DCMTK's defaults; another sender would not show it.
            workloads = [workload for workload in workloads if not workload.nagle]
        print(f"data sets ready in {time.monotonic() - started:.1f} s:")
        for workload in workloads:
            print(
                f"  {workload.name}: {workload.description}, "
                f"{workload.total_bytes / MEGABYTE:,.1f} MB"
            )
        print(
            f"receivers: {', '.join(receivers)}; sender: {arguments.sender}; "
            f"{arguments.runs} round(s)"
        )
        cells = {
            (workload.name, receiver): Cell(workload.name, receiver)
            for workload in workloads
            for receiver in receivers
        }
        for round_index in range(arguments.runs):
            # Rotate the order each round so no receiver always runs first or last.
            shift = round_index % len(receivers)
            order = receivers[shift:] + receivers[:shift]
            for workload in workloads:
                for receiver in order:
                    cell_dir = scratch / "cells" / f"{round_index}-{workload.name}-{receiver}"
                    result = _measure(workload, receiver, round_index, cell_dir, arguments)
                    cells[(workload.name, receiver)].runs.append(result)
                    seconds = result.seconds or float("inf")
                    rate = len(workload.files) / seconds
                    throughput = workload.total_bytes / seconds / MEGABYTE
                    peak = (result.peak_rss_bytes or 0) / MEBIBYTE
                    print(
                        f"round {round_index + 1} {workload.name:11} {receiver:15} "
                        f"{rate:9,.1f} files/s {throughput:7,.1f} MB/s {peak:6.0f} MiB  "
                        f"{result.integrity}" + (f"  ERROR {result.error}" if result.error else ""),
                        flush=True,
                    )
                    # Flush the page cache's dirty pages so that one cell's writeback
                    # does not slow the next one.
                    os.sync()
        rows = summarise(cells, workloads)
        table = format_table(rows, workloads)
        print()
        print(table)
        for line in _fsync_comparison(rows):
            print(line)
        arguments.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        result_path = arguments.out / f"receivers-{stamp}.json"
        document = {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "environment": {
                **_environment(arguments, receivers),
                "load_average_at_start": load_at_start,
            },
            "rounds": arguments.runs,
            "workloads": [
                {
                    "name": workload.name,
                    "description": workload.description,
                    "files": len(workload.files),
                    "bytes": workload.total_bytes,
                    "associations": workload.associations,
                    "sender_nagle": workload.nagle,
                }
                for workload in workloads
            ],
            "summary": rows,
            "table_markdown": table,
            "cells": [
                {
                    "workload": cell.workload,
                    "receiver": cell.receiver,
                    "runs": [vars(run) for run in cell.runs],
                }
                for cell in cells.values()
            ],
        }
        result_path.write_text(json.dumps(document, indent=2))
        print(f"\nresults: {result_path}")
        if not arguments.no_plot:
            print(_plot(rows, workloads, result_path.with_suffix(".png")))
        print(f"total {time.monotonic() - started:.0f} s")
        return 0 if all(row["intact"] for row in rows) else 1
    finally:
        if arguments.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    launch.let_receivers_stop_on_sigint()
    return run(_parse_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the end-to-end SCP tests: start a StoreSCP on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiodicom import SCPConfig, StoreSCP
from support import split_part10

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def running_scp(
    data_dir: Path,
    *,
    callbacks: Sequence[Any] = (),
    event_callbacks: Sequence[Any] = (),
    sort_by: str = "PATIENT",
    ae_title: str = "AIODICOM",
    config: SCPConfig | None = None,
) -> AsyncIterator[StoreSCP]:
    scp = StoreSCP(
        ae_title=ae_title,
        host=LOOPBACK,
        port=0,
        data_dir=data_dir,
        sort_by=sort_by,
        callbacks=list(callbacks),
        event_callbacks=list(event_callbacks),
        config=config,
    )
    async with scp:
        yield scp


def stored_files(data_dir: Path) -> list[Path]:
    """Every completed file under data_dir (temporary files live in hidden folders)."""
    return sorted(
        path
        for path in data_dir.rglob("*.dcm")
        if not any(part.startswith(".") for part in path.relative_to(data_dir).parts)
    )


def leftover_temporary_files(data_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in data_dir.rglob("*")
        if path.is_file() and any(part.startswith(".") for part in path.relative_to(data_dir).parts)
    )


def stored_dataset_bytes(path: Path) -> bytes:
    return split_part10(path.read_bytes())[1]

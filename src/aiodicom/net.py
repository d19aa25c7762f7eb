"""The synchronous facade: pacsanini's ``StoreSCPServer`` API on aiodicom's async SCP.

pacsanini code migrates by changing the import::

    from aiodicom.net import StoreSCPServer
    from aiodicom.models import StorageSortKey

    with StoreSCPServer({"aetitle": "MY_AE", "port": 11112}, data_dir="incoming") as server:
        ...   # received files land in incoming/PatientID/Study/Series/SOP.dcm

``run(block=False)`` runs the event loop in a background thread (anyio's blocking
portal) and returns once the port is listening; ``run(block=True)`` serves in the
calling thread until Ctrl-C. Differences from pacsanini are listed in the README's
migration section (callbacks run after the response, the node's ``ip`` is bound when
given, compressed transfer syntaxes and C-ECHO are accepted).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .models import DicomNode, StorageSortKey
from .scp import SCPConfig, StoreSCP, serve_until_signalled

logger = logging.getLogger("aiodicom.net")


class StoreSCPServer:
    """A Storage SCP with a blocking API, for scripts (pacsanini-compatible)."""

    def __init__(
        self,
        node: DicomNode | Mapping[str, Any],
        data_dir: str | os.PathLike[str] = "",
        sort_by: StorageSortKey | str = StorageSortKey.PATIENT,
        db_session: object = None,
        callbacks: Sequence[Callable[..., Any]] | None = None,
        *,
        event_callbacks: Sequence[Callable[..., Any]] | None = None,
        config: SCPConfig | None = None,
    ) -> None:
        if db_session is not None:
            raise ValueError(
                "aiodicom has no database integration: db_session is not supported; "
                "record files from a callback instead"
            )
        self.node = node if isinstance(node, DicomNode) else DicomNode(**dict(node))
        if not self.node.has_port():
            raise ValueError(f"{self.node} must have a set port to listen to.")
        self.data_dir = os.fspath(data_dir)
        self.sort_by = StorageSortKey(sort_by)
        self.callbacks = list(callbacks or ())
        self.event_callbacks = list(event_callbacks or ())
        self.config = config
        self.scp: StoreSCP | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._serving: Future[None] | None = None

    def __str__(self) -> str:
        return f"<{type(self).__name__}: {self.node} - {self.data_dir}>"

    __repr__ = __str__

    @property
    def port(self) -> int | None:
        """The bound port while running (useful when the node's port is 0)."""
        return self.scp.port if self.scp is not None else None

    def _make_scp(self) -> StoreSCP:
        aetitle = self.node.aetitle
        ae_title = aetitle.decode("ascii") if isinstance(aetitle, bytes) else str(aetitle)
        return StoreSCP(
            ae_title=ae_title.strip(),
            host=self.node.ip or "0.0.0.0",
            port=int(self.node.port or 0),
            data_dir=self.data_dir or ".",
            sort_by=self.sort_by,
            callbacks=self.callbacks,
            event_callbacks=self.event_callbacks,
            config=self.config,
        )

    def run(self, block: bool = False) -> None:
        """Start serving.

        ``block=False``: in a background thread; returns once the port is listening
        (raises ``OSError`` if it cannot bind). ``block=True``: in this thread, until
        Ctrl-C (SIGINT) or SIGTERM, then shuts down gracefully and returns.
        """
        if self.scp is not None:
            raise RuntimeError(f"A current SCP instance is already running for {self}.")
        if self.data_dir:
            os.makedirs(self.data_dir, exist_ok=True)
        scp = self._make_scp()
        if block:
            try:
                anyio.run(serve_until_signalled, scp)
            except KeyboardInterrupt:
                logger.info("interrupted")
            return
        portal_cm = start_blocking_portal()
        portal = portal_cm.__enter__()
        try:
            serving, _port = portal.start_task(scp.serve)
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        self._portal_cm, self._portal, self._serving = portal_cm, portal, serving
        self.scp = scp

    def shutdown(self) -> None:
        """Stop a background server gracefully; a no-op when not running."""
        scp, portal, portal_cm, serving = self.scp, self._portal, self._portal_cm, self._serving
        if scp is None or portal is None or portal_cm is None or serving is None:
            return
        try:
            portal.call(scp.shutdown)
            serving.result()
        finally:
            portal_cm.__exit__(None, None, None)
            self.scp = None
            self._portal = self._portal_cm = self._serving = None

    def __enter__(self) -> StoreSCPServer:
        self.run(block=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            logger.error("leaving %s after an error: %r", self, exc)
        self.shutdown()


def run_server(
    node: DicomNode | Mapping[str, Any],
    data_dir: str | os.PathLike[str] = "",
    sort_by: StorageSortKey | str = StorageSortKey.PATIENT,
    callbacks: Sequence[Callable[..., Any]] | None = None,
    block: bool = False,
) -> StoreSCPServer | None:
    """pacsanini's helper: run blocking (returns None) or in the background (returns it)."""
    server = StoreSCPServer(node, data_dir=data_dir, sort_by=sort_by, callbacks=callbacks)
    server.run(block=block)
    return None if block else server


__all__ = ["StoreSCPServer", "run_server"]

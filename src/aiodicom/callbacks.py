"""Running user callbacks after a data set is stored.

Two kinds of callback, both given to the SCP as lists:

- ``callbacks`` (pacsanini's kind): called with the stored file's pydicom ``Dataset``
  (file meta included) as the first positional argument.
- ``event_callbacks``: called with a :class:`StoredInstance` (path, UIDs, calling AE
  title, peer address...); the Dataset is read only if the callback asks for it.

Plain functions and ``functools.partial`` objects run in a worker thread (the event
loop never blocks); ``async def`` functions are awaited on the loop.

Semantics (also in the README):

- A callback runs only after the file is complete at its final path, and the C-STORE
  response does not wait for callbacks: it is sent once the file is on disk.
- Backpressure: at most ``max_pending`` stored instances may have callbacks still to
  run. When that many are pending, the association that stored the next instance waits
  before sending its C-STORE response (and so stops reading), until a slot frees. Memory
  therefore stays bounded however slow the callbacks are.
- The Dataset is read from the stored file once per instance, and only when at least
  one ``callbacks`` entry exists or an event callback calls ``read_dataset()``.
- A callback that raises is logged (with traceback) and counted in ``failures``; the
  file stays stored and the server keeps serving. A Dataset that pydicom cannot read is
  logged the same way and the Dataset callbacks for it are skipped.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydicom import Dataset, dcmread

logger = logging.getLogger("aiodicom.callbacks")

DatasetCallback = Callable[..., Any]
EventCallback = Callable[["StoredInstance"], Any]


@dataclass(frozen=True)
class StoredInstance:
    """What an event callback learns about one stored instance."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str
    called_ae_title: str
    peer_address: tuple[str, int] | None
    size: int
    replaced: bool = False
    _dataset: list[Dataset] = field(default_factory=list, repr=False, compare=False)

    def read_dataset(self) -> Dataset:
        """The stored file as a pydicom Dataset (read once, then cached)."""
        if not self._dataset:
            self._dataset.append(dcmread(self.path))
        return self._dataset[0]


def is_async_callable(function: object) -> bool:
    """True for ``async def`` functions, partials of them and objects with an async __call__."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - we need the bound method
    return call is not None and inspect.iscoroutinefunction(call)


async def call_callback(function: Callable[..., Any], *args: Any) -> None:
    """Await an async callback on the loop, or run a sync one in a worker thread."""
    if is_async_callable(function):
        result = function(*args)
        if inspect.isawaitable(result):
            await result
    else:
        result = await anyio.to_thread.run_sync(functools.partial(function, *args))
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            await result


class CallbackRunner:
    """Runs the callbacks of stored instances in a task group, with a bounded backlog."""

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        callbacks: Sequence[DatasetCallback] = (),
        event_callbacks: Sequence[EventCallback] = (),
        max_pending: int = 32,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._task_group = task_group
        self.callbacks = tuple(callbacks)
        self.event_callbacks = tuple(event_callbacks)
        self._slots = anyio.Semaphore(max_pending)
        self.failures = 0
        self.completed = 0

    @property
    def active(self) -> bool:
        return bool(self.callbacks or self.event_callbacks)

    async def submit(self, instance: StoredInstance) -> None:
        """Queue the callbacks of ``instance``; waits while the backlog is full."""
        if not self.active:
            return
        await self._slots.acquire()
        self._task_group.start_soon(self._run, instance)

    async def _run(self, instance: StoredInstance) -> None:
        try:
            for event_callback in self.event_callbacks:
                await self._guarded(event_callback, instance)
            if self.callbacks:
                try:
                    dataset = await anyio.to_thread.run_sync(instance.read_dataset)
                except Exception:
                    self.failures += 1
                    logger.exception(
                        "cannot read %s as a Dataset; its callbacks are skipped", instance.path
                    )
                    return
                for callback in self.callbacks:
                    await self._guarded(callback, dataset)
        finally:
            self.completed += 1
            self._slots.release()

    async def _guarded(self, function: Callable[..., Any], argument: object) -> None:
        try:
            await call_callback(function, argument)
        except Exception:
            self.failures += 1
            logger.exception("callback %r raised", function)

"""The streaming, atomic storage writer of the Storage SCP (anyio).

One :class:`IncomingFile` per C-STORE-RQ: the data set arrives as chunks, is scanned for
the attributes that name the file (:mod:`.header_scan`), kept in memory while small and
streamed to a temporary file when large, then renamed into place in one step. A stored
file appears at its final name complete or not at all.

* Temporary files live in ``data_dir/.aiodicom-tmp/`` (same filesystem, so
  ``os.replace`` is atomic). No stored path can land there: UIDs start with a digit and
  Patient ID components never start with a dot (:mod:`.layout`).
* Where file I/O runs (``write_in_threads``). By default: a data set up to
  ``inline_write_limit`` (1 MiB) without fsync is written by the event loop itself at
  commit (create, write, rename: less than the hop to a worker thread and back; CT
  images arrived ~1.3x faster on ext4 that way); anything with fsync, and the batches
  of a larger data set, go to worker threads (one hop per batch; measured faster than
  the loop for 96 MB data sets). ``True`` sends every write to threads (a filesystem
  that may stall, e.g. NFS); ``False`` keeps every write in the loop.
* A data set over ``memory_buffer_limit`` is written in batches of
  ``write_batch_size``, so the bytes held per incoming file stay below
  ``max(memory_buffer_limit, write_batch_size)`` plus one chunk.
* Chunks that are views of immutable ``bytes`` (what the transport hands out) are kept
  as views until written, not copied. A view keeps the whole read it came from alive;
  since a read is nearly all data-set bytes of this message (PDU and PDV headers are 12
  bytes per PDU), what is pinned stays within a small factor of what is counted.
* The bytes after the File Meta Information are exactly the bytes received.

Failure statuses (PS3.4 Table B.2-1 for C-STORE; raised as :class:`StoreFailure`):

* 0xA700 Refused: Out of Resources - any ``OSError`` while writing (disk full...).
* 0xA900 Error: Data Set does not match SOP Class - the data set's SOP Class or SOP
  Instance UID differs from the command's Affected SOP Class/Instance UID.
* 0xC000 Cannot understand - the data set header cannot be walked.
* 0xC001 Cannot understand - SOP Class/Instance UID, or a UID the layout needs, missing.
* 0xC002 Cannot understand - a UID is not usable as a path component (not digits and
  dots, or longer than 64).
* 0x0111 Duplicate SOP Instance (PS3.7 Annex C) - with ``DuplicatePolicy.REJECT`` when
  the file already exists. ``KEEP_EXISTING`` reports success and keeps the old file.

The methods of one ``IncomingFile`` must be awaited one at a time (one C-STORE stream).
``start_cleanup()`` removes every temporary file, so call it before serving and do not
let two running servers share a data directory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Final, TypeVar

import anyio
import anyio.to_thread

from .dirsync import DirectorySyncer
from .header_scan import DEFAULT_MAX_HEADER_BYTES, HeaderFields, HeaderScanError, HeaderScanner
from .layout import StorageSortKey, UnsafePathComponent, final_path, relative_parts
from .part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, encode_file_meta

__all__ = [
    "STATUS_CANNOT_UNDERSTAND",
    "STATUS_DATA_SET_MISMATCH",
    "STATUS_DUPLICATE_SOP_INSTANCE",
    "STATUS_MISSING_UID",
    "STATUS_OUT_OF_RESOURCES",
    "STATUS_UNSAFE_PATH",
    "TEMP_DIR_NAME",
    "DuplicatePolicy",
    "IncomingFile",
    "StorageConfig",
    "StorageWriter",
    "StoreFailure",
    "StoredFile",
]

logger = logging.getLogger("aiodicom.storage")

STATUS_OUT_OF_RESOURCES: Final = 0xA700
STATUS_DATA_SET_MISMATCH: Final = 0xA900
STATUS_CANNOT_UNDERSTAND: Final = 0xC000
STATUS_MISSING_UID: Final = 0xC001
STATUS_UNSAFE_PATH: Final = 0xC002
STATUS_DUPLICATE_SOP_INSTANCE: Final = 0x0111

TEMP_DIR_NAME: Final = ".aiodicom-tmp"
TEMP_SUFFIX: Final = ".part"

_MIB: Final = 1024 * 1024
_T = TypeVar("_T")
_R = TypeVar("_R")
_STUDY_LAYOUTS: Final = frozenset({StorageSortKey.STUDY, StorageSortKey.PATIENT})


def _iov_max() -> int:
    # POSIX guarantees at least 16 buffers per writev call; Linux and the BSDs allow 1024.
    try:
        return max(16, os.sysconf("SC_IOV_MAX"))
    except (AttributeError, ValueError, OSError):
        return 16


_IOV_MAX: Final = _iov_max()
_OPEN_FLAGS: Final = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


class DuplicatePolicy(str, Enum):
    """What to do when a file for the same SOP Instance UID already exists."""

    REPLACE = "REPLACE"  # atomically replace it (logged)
    KEEP_EXISTING = "KEEP_EXISTING"  # keep the old file, discard the new data, succeed
    REJECT = "REJECT"  # keep the old file, fail with 0x0111


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path
    sort_by: StorageSortKey = StorageSortKey.PATIENT
    # Durability: fsync the file before the rename and its directory after it.
    fsync: bool = False
    duplicates: DuplicatePolicy = DuplicatePolicy.REPLACE
    # Data sets up to this size are written with a single thread hop at commit.
    memory_buffer_limit: int = 1 * _MIB
    write_batch_size: int = 4 * _MIB
    # Data sets up to this size are written by the event loop itself when fsync is off:
    # create, write and rename of a small file cost less than the hop to a worker
    # thread and back. 0 sends every write to a worker thread.
    inline_write_limit: int = 1 * _MIB
    # None: as above. True: every write in worker threads (e.g. a network filesystem
    # that may stall). False: every write in the event loop.
    write_in_threads: bool | None = None
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "sort_by", StorageSortKey(self.sort_by))
        object.__setattr__(self, "duplicates", DuplicatePolicy(self.duplicates))
        if (
            self.memory_buffer_limit < 0
            or self.write_batch_size <= 0
            or self.inline_write_limit < 0
        ):
            raise ValueError(
                "memory_buffer_limit and inline_write_limit must be >= 0, write_batch_size > 0"
            )


@dataclass(frozen=True)
class StoredFile:
    """A committed instance. ``size`` is the file's size on disk (header included)."""

    location: str  # the final path, as a string (``path`` makes the Path object)
    fields: HeaderFields
    transfer_syntax_uid: str
    size: int
    replaced: bool  # an existing file was replaced (DuplicatePolicy.REPLACE)
    kept_existing: bool = False  # the existing file was kept (DuplicatePolicy.KEEP_EXISTING)

    @property
    def path(self) -> Path:
        """The final path (built on demand: a Path costs more than the rest of this)."""
        return Path(self.location)


class StoreFailure(Exception):
    """The instance was not stored; ``status`` is the C-STORE-RSP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"0x{status:04X}: {message}")
        self.status = status
        self.message = message


class StorageWriter:
    """Creates one :class:`IncomingFile` per received instance."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._temp_dir = config.data_dir / TEMP_DIR_NAME
        self._temp_prefix = os.path.join(self._temp_dir, "")  # str: cheaper per file
        self._directories = _KnownDirectories()
        # Shared by every file of this writer: concurrent stores into one folder share
        # its fsync (only used with fsync on).
        self._directory_syncer = DirectorySyncer()

    async def start_cleanup(self) -> int:
        """Create the folders and remove temporary files left by a crash (their count)."""
        return await anyio.to_thread.run_sync(self.cleanup_sync)

    def cleanup_sync(self) -> int:
        """Blocking form of :meth:`start_cleanup` (for a supervisor with no event loop)."""
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        removed = 0
        with os.scandir(self._temp_dir) as entries:
            for entry in entries:
                if entry.name.endswith(TEMP_SUFFIX) and not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
        if removed:
            logger.info("removed %d leftover temporary file(s) in %s", removed, self._temp_dir)
        return removed

    def begin(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae_title: str,
    ) -> IncomingFile:
        return IncomingFile(
            self.config,
            self._temp_prefix,
            self._directories,
            self._directory_syncer,
            sop_class_uid=sop_class_uid.strip("\x00 "),
            sop_instance_uid=sop_instance_uid.strip("\x00 "),
            transfer_syntax_uid=transfer_syntax_uid.strip("\x00 "),
            calling_ae_title=calling_ae_title,
        )


class _KnownDirectories:
    """Folders (by their path relative to ``data_dir``) already resolved inside
    ``data_dir`` and created. Bounded: cleared when full. A folder replaced afterwards
    by a symlink is not noticed; that needs local write access to the storage tree,
    which a network peer does not have."""

    LIMIT: Final = 4096

    def __init__(self) -> None:
        self._folders: dict[tuple[str, ...], str] = {}

    def get(self, relative: tuple[str, ...]) -> str | None:
        return self._folders.get(relative)

    def add(self, relative: tuple[str, ...], folder: str) -> None:
        if len(self._folders) >= self.LIMIT:
            self._folders.clear()
        self._folders[relative] = folder


@dataclass
class _TempFile:
    path: str
    descriptor: int | None = None
    chunks: list[bytes | memoryview] = field(default_factory=list)


class IncomingFile:
    """The data set of one C-STORE-RQ on its way to disk."""

    def __init__(
        self,
        config: StorageConfig,
        temp_prefix: str,
        directories: _KnownDirectories,
        directory_syncer: DirectorySyncer,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae_title: str,
    ) -> None:
        self._config = config
        self._temp_prefix = temp_prefix
        self._directories = directories
        self._directory_syncer = directory_syncer
        self._sop_class_uid = sop_class_uid
        self._sop_instance_uid = sop_instance_uid
        self._transfer_syntax_uid = transfer_syntax_uid
        self._scanner = HeaderScanner(transfer_syntax_uid, max_header_bytes=config.max_header_bytes)
        self._chunks: list[bytes | memoryview] = []  # received, not yet on disk
        self._buffered = 0
        self._received = 0
        self._temp: _TempFile | None = None
        self._failure: StoreFailure | None = None
        self._identity_checked = False
        self._finished = False
        self._header = b""
        try:
            self._header = self._encode_header(calling_ae_title)
        except ValueError as exc:
            self._failure = StoreFailure(STATUS_CANNOT_UNDERSTAND, str(exc))

    def _encode_header(self, calling_ae_title: str) -> bytes:
        def encode(source_ae_title: str | None) -> bytes:
            return encode_file_meta(
                sop_class_uid=self._sop_class_uid,
                sop_instance_uid=self._sop_instance_uid,
                transfer_syntax_uid=self._transfer_syntax_uid,
                implementation_class_uid=self._config.implementation_class_uid,
                implementation_version_name=self._config.implementation_version_name,
                source_ae_title=source_ae_title,
            )

        try:
            return encode(calling_ae_title)
        except ValueError:
            # (0002,0016) is optional: a calling AE title we cannot encode is left out
            # rather than failing the store.
            logger.warning("calling AE title %r left out of the file meta", calling_ae_title)
            return encode(None)

    @property
    def received(self) -> int:
        """Data set bytes received so far."""
        return self._received

    async def write(self, chunk: memoryview | bytes) -> None:
        """Take the next chunk; it is copied or written before this returns."""
        if self._finished:
            raise RuntimeError("write() after commit() or abort()")
        self._received += len(chunk)
        if self._failure is not None:
            return  # doomed: the peer is still sending, accept and drop
        try:
            self._scanner.feed(chunk)
        except HeaderScanError as exc:
            await self._doom(StoreFailure(STATUS_CANNOT_UNDERSTAND, str(exc)))
            return
        if not self._identity_checked and self._scanner.done:
            self._identity_checked = True
            failure = self._identity_failure(self._scanner.result(), final=False)
            if failure is not None:
                await self._doom(failure)
                return
        self._chunks.append(_keepable(chunk))
        self._buffered += len(chunk)
        if self._temp is None:
            if self._buffered > self._config.memory_buffer_limit:
                await self._write_batch()
        elif self._buffered >= self._config.write_batch_size:
            await self._write_batch()

    async def commit(self) -> StoredFile:
        """Validate and move the file into place; raises :class:`StoreFailure`."""
        if self._finished:
            raise RuntimeError("commit() after commit() or abort()")
        self._finished = True
        try:
            relative = self._validate()
            config = self._config
            if (
                config.write_in_threads is None
                and self._temp is None
                and not config.fsync
                and self._buffered <= config.inline_write_limit
            ):
                stored = self._commit_sync(relative)
            else:
                stored = await self._run_io(self._commit_sync, relative)
        except StoreFailure as failure:
            await self._discard()
            logger.warning("not stored: SOP Instance %s: %s", self._sop_instance_uid, failure)
            raise
        except BaseException:
            await self._discard()
            raise
        if stored.replaced:
            logger.info("replaced existing file %s", stored.path)
        elif stored.kept_existing:
            logger.info("kept existing file %s, received copy discarded", stored.path)
        return stored

    async def abort(self) -> None:
        """Discard everything received; idempotent, leaves no file anywhere."""
        self._finished = True
        await self._discard()

    # -- validation --------------------------------------------------------------------

    def _validate(self) -> tuple[str, ...]:
        if self._failure is not None:
            raise self._failure
        try:
            self._scanner.finish()
        except HeaderScanError as exc:
            raise StoreFailure(STATUS_CANNOT_UNDERSTAND, str(exc)) from None
        fields = self._scanner.result()
        failure = self._identity_failure(fields, final=True)
        if failure is not None:
            raise failure
        sort_by = self._config.sort_by
        missing = None
        if sort_by is not StorageSortKey.IMAGE and not fields.series_instance_uid:
            missing = "Series Instance UID"
        if sort_by in _STUDY_LAYOUTS and not fields.study_instance_uid:
            missing = "Study Instance UID"
        if missing is not None:
            raise StoreFailure(
                STATUS_MISSING_UID,
                f"the data set has no {missing}, the {sort_by.value} layout needs it",
            )
        try:
            return relative_parts(fields, sort_by)
        except UnsafePathComponent as exc:
            raise StoreFailure(STATUS_UNSAFE_PATH, str(exc)) from None

    def _identity_failure(self, fields: HeaderFields, *, final: bool) -> StoreFailure | None:
        """0xA900 for a data set that is not what the command announced."""
        pairs = (
            ("SOP Class UID", fields.sop_class_uid, self._sop_class_uid),
            ("SOP Instance UID", fields.sop_instance_uid, self._sop_instance_uid),
        )
        for name, in_data_set, in_command in pairs:
            if in_data_set and in_data_set != in_command:
                return StoreFailure(
                    STATUS_DATA_SET_MISMATCH,
                    f"{name} {in_data_set!r} in the data set, {in_command!r} in the command",
                )
            if final and not in_data_set:
                limit = " (within max_header_bytes)" if self._scanner.limit_reached else ""
                return StoreFailure(STATUS_MISSING_UID, f"the data set has no {name}{limit}")
        return None

    # -- disk --------------------------------------------------------------------------

    async def _doom(self, failure: StoreFailure) -> None:
        self._failure = failure
        logger.warning("store of SOP Instance %s doomed early: %s", self._sop_instance_uid, failure)
        await self._discard()

    async def _discard(self) -> None:
        self._chunks = []
        self._buffered = 0
        temp = self._temp
        if temp is None:
            return
        self._temp = None
        with anyio.CancelScope(shield=True):
            await self._run_io(_discard_temp_sync, temp)

    async def _run_io(self, function: Callable[[_T], _R], argument: _T) -> _R:
        """A blocking file step: in a worker thread, or right here when
        ``write_in_threads`` is False (the one place that choice is made)."""
        if self._config.write_in_threads is False:
            return function(argument)
        return await anyio.to_thread.run_sync(function, argument)

    def _hand_over(self) -> _TempFile:
        """Move the pending chunks to the temporary file (made on first use, header
        first); done before any thread hop, so no chunk is ever written twice or kept
        after it is on disk, whatever happens to this task while the thread runs."""
        temp = self._temp
        if temp is None:
            temp = self._temp = _TempFile(self._temp_prefix + _temp_name())
            temp.chunks = [self._header]
        temp.chunks.extend(self._chunks)
        self._chunks = []
        self._buffered = 0
        return temp

    async def _write_batch(self) -> None:
        temp = self._hand_over()
        try:
            await self._run_io(_write_pending_sync, temp)
        except OSError as exc:
            await self._doom(StoreFailure(STATUS_OUT_OF_RESOURCES, f"cannot write: {exc}"))

    def _commit_sync(self, relative: tuple[str, ...]) -> StoredFile:
        """Finish the temp file and move it into place (a worker thread, or the loop for
        a small file without fsync)."""
        config = self._config
        temp = self._hand_over()
        size = len(self._header) + self._received
        try:
            _write_pending_sync(temp)
            assert temp.descriptor is not None
            if config.fsync:
                os.fsync(temp.descriptor)
            os.close(temp.descriptor)
            temp.descriptor = None
            target, created = self._directory_for(relative, known=True)
            try:
                replaced, kept_existing = self._place(temp.path, target)
            except FileNotFoundError:
                # The folder was removed since we last saw it: make it again, once.
                target, created = self._directory_for(relative, known=False)
                replaced, kept_existing = self._place(temp.path, target)
            if kept_existing:
                size = os.stat(target).st_size
            if config.fsync:
                for directory in {os.path.dirname(target), *(str(p.parent) for p in created)}:
                    self._directory_syncer.sync(directory)
        except OSError as exc:
            raise StoreFailure(STATUS_OUT_OF_RESOURCES, f"cannot store: {exc}") from None
        self._temp = None
        return StoredFile(
            location=target,
            fields=self._scanner.result(),
            transfer_syntax_uid=self._transfer_syntax_uid,
            size=size,
            replaced=replaced,
            kept_existing=kept_existing,
        )

    def _directory_for(self, relative: tuple[str, ...], *, known: bool) -> tuple[str, list[Path]]:
        """The final path and the folders created for it.

        A folder already proven inside ``data_dir`` and created is remembered, so most
        files cost no path resolution and no mkdir; ``known=False`` checks again.
        """
        folders = relative[:-1]
        folder = self._directories.get(folders) if known else None
        if folder is not None:
            return folder + os.sep + relative[-1], []
        try:
            target = final_path(self._config.data_dir, PurePosixPath(*relative))
        except UnsafePathComponent as exc:
            raise StoreFailure(STATUS_UNSAFE_PATH, str(exc)) from None
        created = _make_directories(target.parent)
        self._directories.add(folders, str(target.parent))
        return str(target), created

    def _place(self, temp_path: str, target: str) -> tuple[bool, bool]:
        """Rename into place per the duplicate policy: (replaced, kept_existing)."""
        policy = self._config.duplicates
        if policy is DuplicatePolicy.REPLACE:
            existed = os.path.lexists(target)
            os.replace(temp_path, target)
            return existed, False
        # A hard link never overwrites, so two racing stores cannot both win.
        try:
            os.link(temp_path, target)
            exists = False
        except FileExistsError:
            exists = True
        except OSError:
            # Filesystems without hard links: check, then rename (racy but rare).
            exists = os.path.lexists(target)
            if not exists:
                os.replace(temp_path, target)
                return False, False
        os.unlink(temp_path)
        if not exists:
            return False, False
        if policy is DuplicatePolicy.REJECT:
            raise StoreFailure(
                STATUS_DUPLICATE_SOP_INSTANCE, f"{target} already exists (duplicates=REJECT)"
            )
        return False, True


_TEMP_NAMES = itertools.count()


def _new_temp_prefix() -> None:
    global _TEMP_PREFIX
    _TEMP_PREFIX = f"{os.getpid()}-{secrets.token_hex(4)}-"


_TEMP_PREFIX = ""
_new_temp_prefix()
if hasattr(os, "register_at_fork"):
    # A forked child must not reuse its parent's names.
    os.register_at_fork(after_in_child=_new_temp_prefix)


def _temp_name() -> str:
    """A temporary file name unique to this process (process id, random part, counter).

    Cheaper than a uuid4 per file (no system call); the process id keeps the workers of
    one port apart, a fork gets a new prefix, and O_EXCL catches anything else.
    """
    return f"{_TEMP_PREFIX}{next(_TEMP_NAMES)}{TEMP_SUFFIX}"


def _write_pending_sync(temp: _TempFile) -> None:
    """Open the temp file if needed and write its pending chunks (worker thread)."""
    try:
        if temp.descriptor is None:
            try:
                temp.descriptor = os.open(temp.path, _OPEN_FLAGS, 0o666)
            except FileNotFoundError:  # the temporary folder was removed: make it again
                os.makedirs(os.path.dirname(temp.path), exist_ok=True)
                temp.descriptor = os.open(temp.path, _OPEN_FLAGS, 0o666)
        chunks, temp.chunks = temp.chunks, []
        _write_all(temp.descriptor, chunks)
    except BaseException:
        _discard_temp_sync(temp)
        raise


def _keepable(chunk: memoryview | bytes) -> bytes | memoryview:
    """``chunk`` itself when it cannot change under us, else a copy.

    The transport hands out views of the immutable ``bytes`` each read returned, so they
    can be kept until written without a copy. A view of anything mutable (a reused
    buffer) is copied, as the ``write()`` contract allows the caller to reuse it.
    """
    if isinstance(chunk, bytes) or (isinstance(chunk, memoryview) and isinstance(chunk.obj, bytes)):
        return chunk
    return bytes(chunk)


def _write_all(descriptor: int, chunks: Sequence[bytes | memoryview]) -> None:
    views = [memoryview(chunk) for chunk in chunks if chunk]
    if not hasattr(os, "writev"):
        for view in views:
            while view:
                view = view[os.write(descriptor, view) :]
        return
    index = 0
    while index < len(views):
        written = os.writev(descriptor, views[index : index + _IOV_MAX])
        if written <= 0:
            raise OSError("writev wrote nothing")
        # A short write stops anywhere: drop the whole buffers written, trim the next.
        while written:
            length = len(views[index])
            if written >= length:
                written -= length
                index += 1
            else:
                views[index] = views[index][written:]
                written = 0


def _discard_temp_sync(temp: _TempFile) -> None:
    temp.chunks = []
    if temp.descriptor is not None:
        with contextlib.suppress(OSError):
            os.close(temp.descriptor)
        temp.descriptor = None
    try:
        os.unlink(temp.path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error("cannot remove temporary file %s: %s", temp.path, exc)


def _make_directories(directory: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it created (their parents need an fsync)."""
    missing: list[Path] = []
    current = directory
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise
    return missing

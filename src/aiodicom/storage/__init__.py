"""Storage of received instances as DICOM Part 10 files: streamed, atomic, safe paths.

``header_scan``, ``layout`` and ``part10`` are sans-IO; ``writer`` is the anyio layer.
"""

from .header_scan import HeaderFields, HeaderScanError, HeaderScanner
from .layout import (
    StorageSortKey,
    UnsafePathComponent,
    final_path,
    relative_path,
    safe_component,
)
from .part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, encode_file_meta
from .writer import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATA_SET_MISMATCH,
    STATUS_DUPLICATE_SOP_INSTANCE,
    STATUS_MISSING_UID,
    STATUS_OUT_OF_RESOURCES,
    STATUS_UNSAFE_PATH,
    DuplicatePolicy,
    IncomingFile,
    StorageConfig,
    StorageWriter,
    StoredFile,
    StoreFailure,
)

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "STATUS_CANNOT_UNDERSTAND",
    "STATUS_DATA_SET_MISMATCH",
    "STATUS_DUPLICATE_SOP_INSTANCE",
    "STATUS_MISSING_UID",
    "STATUS_OUT_OF_RESOURCES",
    "STATUS_UNSAFE_PATH",
    "DuplicatePolicy",
    "HeaderFields",
    "HeaderScanError",
    "HeaderScanner",
    "IncomingFile",
    "StorageConfig",
    "StorageSortKey",
    "StorageWriter",
    "StoreFailure",
    "StoredFile",
    "UnsafePathComponent",
    "encode_file_meta",
    "final_path",
    "relative_path",
    "safe_component",
]

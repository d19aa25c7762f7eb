"""aiodicom: an asyncio-native DICOM network stack (Storage SCP and SCU) on pydicom and anyio.

The public names are listed in ``__all__``; everything else is private. They are
imported on first use, so that ``import aiodicom.protocol`` (the sans-IO core) does not
pull in the server, the storage writer or anyio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "DicomNode": "aiodicom.models",
    "DuplicatePolicy": "aiodicom.storage",
    "SCPConfig": "aiodicom.scp",
    "SCPStatistics": "aiodicom.scp",
    "StoreSCP": "aiodicom.scp",
    "StoreSCPServer": "aiodicom.net",
    "StorageSortKey": "aiodicom.models",
    "StoredInstance": "aiodicom.callbacks",
    "dcm2dict": "aiodicom.convert",
    "AssociationAbortedError": "aiodicom.scu_files",
    "AssociationRejectedError": "aiodicom.scu_files",
    "ClientAssociation": "aiodicom.client",
    "ClientError": "aiodicom.scu_files",
    "DicomFile": "aiodicom.scu_files",
    "DimseTimeout": "aiodicom.transport",
    "NoPresentationContextError": "aiodicom.scu_files",
    "NotDicomFileError": "aiodicom.scu_files",
    "StoreResult": "aiodicom.scu_files",
    "TooManyContextsError": "aiodicom.scu_files",
    "associate": "aiodicom.client",
    "contexts_for_datasets": "aiodicom.scu_files",
    "contexts_for_files": "aiodicom.scu_files",
    "read_dicom_file": "aiodicom.scu_files",
    "store_files": "aiodicom.client",
}

__all__ = [
    "AssociationAbortedError",
    "AssociationRejectedError",
    "ClientAssociation",
    "ClientError",
    "DicomFile",
    "DicomNode",
    "DimseTimeout",
    "DuplicatePolicy",
    "NoPresentationContextError",
    "NotDicomFileError",
    "SCPConfig",
    "SCPStatistics",
    "StorageSortKey",
    "StoreResult",
    "StoreSCP",
    "StoreSCPServer",
    "StoredInstance",
    "TooManyContextsError",
    "__version__",
    "associate",
    "contexts_for_datasets",
    "contexts_for_files",
    "dcm2dict",
    "read_dicom_file",
    "store_files",
]

if TYPE_CHECKING:
    from .callbacks import StoredInstance
    from .client import (
        ClientAssociation,
        associate,
        store_files,
    )
    from .convert import dcm2dict
    from .models import DicomNode, StorageSortKey
    from .net import StoreSCPServer
    from .scp import SCPConfig, SCPStatistics, StoreSCP
    from .scu_files import (
        AssociationAbortedError,
        AssociationRejectedError,
        ClientError,
        DicomFile,
        NoPresentationContextError,
        NotDicomFileError,
        StoreResult,
        TooManyContextsError,
        contexts_for_datasets,
        contexts_for_files,
        read_dicom_file,
    )
    from .storage import DuplicatePolicy
    from .transport import DimseTimeout


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'aiodicom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value

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
}

__all__ = [
    "DicomNode",
    "DuplicatePolicy",
    "SCPConfig",
    "SCPStatistics",
    "StorageSortKey",
    "StoreSCP",
    "StoreSCPServer",
    "StoredInstance",
    "__version__",
    "dcm2dict",
]

if TYPE_CHECKING:
    from .callbacks import StoredInstance
    from .convert import dcm2dict
    from .models import DicomNode, StorageSortKey
    from .net import StoreSCPServer
    from .scp import SCPConfig, SCPStatistics, StoreSCP
    from .storage import DuplicatePolicy


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'aiodicom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value

"""pacsanini-compatible data models: ``DicomNode`` and ``StorageSortKey``.

pacsanini users migrate by changing ``from pacsanini.models import ...`` to
``from aiodicom.models import ...``. pacsanini built ``DicomNode`` on a pydantic (v1)
model; aiodicom depends only on pydicom and anyio, so this is a plain class that keeps
what users of the pydantic model observe:

* keyword-only construction, unknown keywords ignored (pydantic v1's default);
* ``aetitle`` stored as ``bytes`` (a ``str`` is encoded), ``ip`` and ``port`` optional,
  an empty ``ip``/``port`` (``""``/``None``) means "not set", a numeric string port is
  converted to ``int``;
* ``has_net_info`` is ``True`` when both ``ip`` and ``port`` are set, whatever was
  passed for it (pacsanini recomputed it the same way);
* invalid values raise ``ValueError`` (pydantic's ``ValidationError`` is one);
* equality with another node, or with the ``dict()`` of one, as pydantic v1 compared;
* ``repr``/``str`` in pydantic v1's format, ``has_port()``, ``dict()``, ``parse_obj()``.

Deliberate differences, all stricter or more useful, none changing a valid pacsanini
program: the AE title must be a valid AE value (PS3.5 Table 6.2-1: at most 16 characters
of the default repertoire, no backslash, no control characters, not all spaces), the port
must be in 0..65535, and ``port=0`` is kept as 0 (the operating system picks a free port
when a server binds it) where pacsanini turned every falsy port into ``None``. Values are
validated again when an attribute is assigned, so ``has_net_info`` is never stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiodicom.storage.layout import StorageSortKey

__all__ = ["DicomNode", "StorageSortKey"]

# PS3.5 Table 6.2-1 (AE): 16 characters maximum.
MAX_AE_TITLE_LENGTH = 16
# TCP port numbers are 16-bit.
MAX_PORT = 65535


def _coerce_aetitle(value: object) -> bytes:
    if isinstance(value, str):
        try:
            title = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(
                f"aetitle must use the DICOM default character repertoire (ASCII): {value!r}"
            ) from None
    elif isinstance(value, bytes):
        title = value
    else:
        raise ValueError(f"aetitle must be a str or bytes -obtained ({type(value)}): {value!r}")
    # PS3.5 Table 6.2-1: AE is the default repertoire without backslash (5CH) and
    # without control characters; leading and trailing spaces are not significant, so
    # a title of only spaces is empty.
    if not title.strip(b" "):
        raise ValueError(f"aetitle must not be empty or only spaces: {value!r}")
    if len(title) > MAX_AE_TITLE_LENGTH:
        raise ValueError(
            f"aetitle must be at most {MAX_AE_TITLE_LENGTH} characters "
            f"(PS3.5 Table 6.2-1), got {len(title)}: {value!r}"
        )
    if any(byte < 0x20 or byte > 0x7E or byte == 0x5C for byte in title):
        raise ValueError(
            f"aetitle must not contain a backslash, control or non-ASCII character: {value!r}"
        )
    return title


def _coerce_ip(value: object) -> str | None:
    # pacsanini treated any falsy ip ("" or None) as "not set".
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="strict")
    if not isinstance(value, str):
        raise ValueError(f"ip must be a str (an address or a host name), got {value!r}")
    return value


def _coerce_port(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        # bool is an int subclass; True as a port is always a mistake.
        raise ValueError(f"port must be an int or a numeric string, got {value!r}")
    if isinstance(value, str):
        try:
            port = int(value)  # "11112.21" raises ValueError, as in pacsanini
        except ValueError:
            raise ValueError(f"port must be an integer, got {value!r}") from None
    elif isinstance(value, int):
        port = value
    elif isinstance(value, float) and value.is_integer():
        port = int(value)
    else:
        raise ValueError(f"port must be an int or a numeric string, got {value!r}")
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port must be between 0 and {MAX_PORT}, got {port}")
    return port


# The type of DicomNode.dict(), named outside the class whose dict() method would
# otherwise shadow the builtin in annotations.
NodeFields = dict[str, Any]

_COERCERS = {"aetitle": _coerce_aetitle, "ip": _coerce_ip, "port": _coerce_port}


class DicomNode:
    """A DICOM network node: an AE title and, optionally, where it listens.

    ``DicomNode(aetitle="STORESCP", ip="127.0.0.1", port=11112)``; ``port`` may be given
    as a numeric string. ``has_net_info`` says whether both ``ip`` and ``port`` are set.
    """

    __slots__ = ("aetitle", "ip", "port")

    aetitle: bytes
    ip: str | None
    port: int | None

    def __init__(
        self,
        *,
        aetitle: str | bytes | None = None,
        ip: str | None = None,
        port: int | str | None = None,
        has_net_info: bool | None = None,
        **ignored: Any,
    ) -> None:
        # has_net_info and unknown keywords are accepted and ignored, as pydantic v1 did
        # (has_net_info was always recomputed from ip and port). A missing aetitle is a
        # ValueError, not a TypeError, as pydantic's ValidationError was.
        del has_net_info, ignored
        if aetitle is None:
            raise ValueError("aetitle is required")
        object.__setattr__(self, "aetitle", _coerce_aetitle(aetitle))
        object.__setattr__(self, "ip", _coerce_ip(ip))
        object.__setattr__(self, "port", _coerce_port(port))

    def __setattr__(self, name: str, value: Any) -> None:
        coerce = _COERCERS.get(name)
        if coerce is None:
            raise AttributeError(f"{type(self).__name__} has no settable attribute {name!r}")
        object.__setattr__(self, name, coerce(value))

    @property
    def has_net_info(self) -> bool:
        """True when both the ip and the port are set."""
        return self.ip is not None and self.port is not None

    def has_port(self) -> bool:
        """True when the port is set (a server needs one to listen on)."""
        return self.port is not None

    def dict(self) -> NodeFields:
        """The fields as a dict, like pydantic v1's ``BaseModel.dict()``."""
        return {
            "aetitle": self.aetitle,
            "ip": self.ip,
            "port": self.port,
            "has_net_info": self.has_net_info,
        }

    @classmethod
    def parse_obj(cls, obj: Mapping[str, Any] | DicomNode) -> DicomNode:
        """Build a node from a mapping (pydantic v1's ``parse_obj``)."""
        if isinstance(obj, DicomNode):
            return cls(**obj.dict())
        if not isinstance(obj, Mapping):
            raise ValueError(f"DicomNode expected a mapping, got {type(obj).__name__}")
        return cls(**obj)

    def __eq__(self, other: object) -> bool:
        # pydantic v1 compared field dicts, including against a plain dict.
        if isinstance(other, DicomNode):
            return self.dict() == other.dict()
        if isinstance(other, Mapping):
            return self.dict() == dict(other)
        return NotImplemented

    # Mutable and equal-by-value, so unhashable (as pydantic v1 models were).
    __hash__ = None  # type: ignore[assignment]

    def _fields_text(self, separator: str) -> str:
        return separator.join(f"{name}={value!r}" for name, value in self.dict().items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._fields_text(', ')})"

    def __str__(self) -> str:
        return self._fields_text(" ")

    def __getstate__(self) -> NodeFields:
        return {"aetitle": self.aetitle, "ip": self.ip, "port": self.port}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        for name in _COERCERS:
            object.__setattr__(self, name, _COERCERS[name](state[name]))

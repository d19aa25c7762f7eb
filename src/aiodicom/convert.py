"""pacsanini-compatible conversion of a data set to a JSON-ready dict: ``dcm2dict``.

The layout is pydicom's DICOM JSON model (PS3.18 Annex F, ``Dataset.to_json_dict()``):
``{"00100020": {"vr": "LO", "Value": ["123"]}, ...}``, keys the 8 upper-case hex digits of
the tag. As in pacsanini, every element also carries a ``"Name"``, written after the
model's own keys: the element's dictionary name with square brackets removed and each
space-separated word capitalised (``str.capitalize``, so the rest of the word is
lower-cased), then joined: "Patient ID" -> ``"PatientId"``, "SOP Instance UID" ->
``"SopInstanceUid"``, "Patient's Name" -> ``"Patient'sName"``, a known private element
"[Some Name]" -> ``"SomeName"``, an unknown private element -> ``"PrivateTagData"``.

Pixel data as pacsanini handled it: with ``include_pixels=False`` (the default) the
output always has a ``"7FE00010"`` entry with its ``vr`` and ``Name`` but no value
(pacsanini set ``PixelData = None`` before converting, so the entry appears even for a
data set without pixel data), and a path is read with ``stop_before_pixels=True``. With
``include_pixels=True`` the pixel data is base64 ``"InlineBinary"``.

Differences from pacsanini (none changes the output of a call that worked there):
the caller's data set is never modified (pacsanini set its ``PixelData`` to ``None``),
every item of every sequence is named (pacsanini named only the first item), the empty
pixel-data entry gets a concrete VR (OB or OW) rather than the dictionary's "OB or OW",
float and double float pixel data lose their value too, ``bytes`` are read as the
content of a DICOM file, and a path may be any ``os.PathLike``.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_description
from pydicom.dataelem import DataElement

__all__ = ["dcm2dict", "dict2dcm"]

PIXEL_DATA_TAG = 0x7FE00010
# pydicom stops at any of these with stop_before_pixels: Float Pixel Data,
# Double Float Pixel Data, Pixel Data (PS3.6 Table 6-1, group 7FE0).
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, PIXEL_DATA_TAG})

JsonDict = dict[str, dict[str, Any]]


@lru_cache(maxsize=4096)
def element_json_name(name: str) -> str:
    """pacsanini's ``Name``: brackets dropped, words capitalised and joined."""
    name = name.replace("[", "").replace("]", "")
    return "".join(word.capitalize() for word in name.split(" "))


def _pixel_data_vr(dataset: Dataset) -> str:
    # The VR an empty Pixel Data entry gets, from the same facts a writer uses:
    # PS3.5 A.4: encapsulated (compressed) pixel data is OB; PS3.5 8.2 / A.1: native
    # pixel data is OW when Bits Allocated > 8, and pydicom writes OB otherwise.
    try:
        element = dataset.get(PIXEL_DATA_TAG)
        if element is not None and element.VR in ("OB", "OW"):
            return str(element.VR)
        file_meta = getattr(dataset, "file_meta", None)
        transfer_syntax = None if file_meta is None else file_meta.get("TransferSyntaxUID")
        if transfer_syntax is not None and transfer_syntax.is_compressed:
            return "OB"
        bits_allocated = dataset.get("BitsAllocated")
    except Exception:
        # An unreadable Bits Allocated or transfer syntax: OB is valid for any pixel data.
        return "OB"
    return "OW" if isinstance(bits_allocated, int) and bits_allocated > 8 else "OB"


def _element_entry(element: DataElement, skip_invalid: bool) -> dict[str, Any]:
    if element.VR == "SQ":
        entry: dict[str, Any] = {
            "vr": "SQ",
            "Value": [_dataset_dict(item, skip_invalid) for item in element.value],
        }
    else:
        entry = element.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1024)
    entry["Name"] = element_json_name(element.name)
    return entry


def _dataset_dict(dataset: Dataset, skip_invalid: bool, *, with_pixels: bool = True) -> JsonDict:
    result: JsonDict = {}
    # keys() gives tags in insertion (file) order, the order Dataset.to_json_dict()
    # uses; iterating the Dataset itself would give sorted elements, not tags.
    for tag in dataset.keys():  # noqa: SIM118
        try:
            # Indexing converts a raw element (this is where an invalid value raises)
            # and sets the private creator that the name of a private element needs.
            element = dataset[tag]
            if with_pixels or tag not in PIXEL_DATA_TAGS:
                entry = _element_entry(element, skip_invalid)
            else:
                vr = _pixel_data_vr(dataset) if tag == PIXEL_DATA_TAG else str(element.VR)
                entry = {"vr": vr, "Name": element_json_name(element.name)}
        except Exception:
            if not skip_invalid:
                raise
            continue
        result[f"{tag:08X}"] = entry
    return result


def _without_pixels(dataset: Dataset, skip_invalid: bool) -> JsonDict:
    result = _dataset_dict(dataset, skip_invalid, with_pixels=False)
    if PIXEL_DATA_TAG not in dataset:
        # pacsanini added an empty Pixel Data element to every data set.
        result[f"{PIXEL_DATA_TAG:08X}"] = {
            "vr": _pixel_data_vr(dataset),
            "Name": element_json_name(dictionary_description(PIXEL_DATA_TAG)),
        }
    return result


def dcm2dict(
    dcm: Dataset | str | bytes | os.PathLike[str],
    include_pixels: bool = False,
    *,
    suppress_invalid_tags: bool = False,
) -> JsonDict:
    """The JSON-compatible dict of a data set, each element named (pacsanini's API).

    ``dcm`` is a ``pydicom.Dataset`` (left unchanged), a path to a DICOM file, or the
    bytes of one. With ``include_pixels=False`` the pixel data is not read from a file
    and appears with no value; with ``True`` it is included as base64 ``InlineBinary``.
    ``json.dumps`` accepts the result. File meta information (group 0002) is not
    included, as in ``Dataset.to_json_dict()``.

    An element whose value pydicom cannot convert raises (as in pacsanini), unless
    ``suppress_invalid_tags`` is true: then that element is left out (as pydicom's
    ``to_json_dict(suppress_invalid_tags=True)`` does).
    """
    if isinstance(dcm, Dataset):
        dataset = dcm
    elif isinstance(dcm, bytes):
        dataset = dcmread(io.BytesIO(dcm), stop_before_pixels=not include_pixels)
    elif isinstance(dcm, (str, os.PathLike)):
        dataset = dcmread(dcm, stop_before_pixels=not include_pixels)
    else:
        raise TypeError(
            f"dcm2dict expects a pydicom Dataset, a path or bytes, got {type(dcm).__name__}"
        )
    if include_pixels:
        return _dataset_dict(dataset, suppress_invalid_tags)
    return _without_pixels(dataset, suppress_invalid_tags)


def _strip_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _strip_names(item) for key, item in value.items() if key != "Name"}
    if isinstance(value, list):
        return [_strip_names(item) for item in value]
    return value


def dict2dcm(dcm_dict: JsonDict) -> Dataset:
    """The data set a ``dcm2dict`` result describes (pacsanini's inverse of it).

    The ``Name`` entries are ignored at every depth; the argument is left unchanged.
    """
    return Dataset.from_json(_strip_names(dcm_dict))

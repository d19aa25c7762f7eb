"""aiodicom.convert.dcm2dict gives pacsanini's JSON layout for every pydicom test file.

pacsanini's algorithm, restated as the oracle: set ``PixelData = None`` on the data set
(unless pixels are wanted), take pydicom's ``to_json_dict()``, and add to each element a
``Name`` made from its dictionary name (brackets dropped, words capitalised, joined).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from aiodicom.convert import dcm2dict, dict2dcm, element_json_name
from support import pydicom_test_files

# PS3.5 Table 6.2-1: the two-letter VRs the JSON model (PS3.18 F.2.3) may carry.
VALID_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF"}
    | {"OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL"}
    | {"UN", "UR", "US", "UT", "UV"}
)
VALUE_KEYS = {"Value", "InlineBinary", "BulkDataURI"}
PIXEL_DATA = "7FE00010"

TEST_FILES = pydicom_test_files()


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as exc:
        pytest.skip(f"pydicom does not read {path.name} without force=True: {exc}")
        raise AssertionError("unreachable") from None


def _without_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_names(item) for key, item in value.items() if key != "Name"}
    if isinstance(value, list):
        return [_without_names(item) for item in value]
    return value


def _check_every_element(json_dict: dict[str, Any], dataset: Dataset) -> int:
    """Every element at every depth has a valid vr and its Name; returns the count."""
    checked = 0
    for key, entry in json_dict.items():
        element = dataset[int(key, 16)]
        assert entry["vr"] in VALID_VRS, (key, entry["vr"])
        assert entry["Name"] == element_json_name(element.name)
        assert isinstance(entry["Name"], str)
        checked += 1
        if entry["vr"] == "SQ":
            assert len(entry["Value"]) == len(element.value)
            for item_dict, item in zip(entry["Value"], element.value, strict=True):
                checked += _check_every_element(item_dict, item)
    return checked


def _pydicom_converts(dataset: Dataset) -> bool:
    try:
        dataset.to_json_dict()
    except Exception:
        return False
    return True


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_every_test_file_converts_like_pacsanini(path: Path) -> None:
    dataset = _read(path)
    if not _pydicom_converts(copy.deepcopy(dataset)):
        # pacsanini raised what pydicom raised; suppressing leaves the bad elements out.
        with pytest.raises(ValueError):
            dcm2dict(dataset)
        tolerant = dcm2dict(dataset, suppress_invalid_tags=True)
        json.dumps(tolerant)
        assert 0 < len(tolerant) <= len(dataset) + 1
        return

    untouched = copy.deepcopy(dataset)
    result = dcm2dict(dataset)
    assert dataset == untouched, "dcm2dict must not modify the caller's data set"
    json.dumps(result)
    assert result.keys() == {f"{element.tag:08X}" for element in dataset} | {PIXEL_DATA}
    present = {key: entry for key, entry in result.items() if int(key, 16) in dataset}
    assert _check_every_element(present, dataset) >= len(present)

    # The pixel data entry is always there, with a concrete VR and no value.
    pixel_entry = result[PIXEL_DATA]
    assert pixel_entry["Name"] == "PixelData"
    assert pixel_entry["vr"] in {"OB", "OW"}
    assert not VALUE_KEYS & pixel_entry.keys()

    # pacsanini's algorithm gives the same dict, apart from the VR pydicom leaves
    # ambiguous ("OB or OW") for a Pixel Data element it has to invent.
    oracle_dataset = copy.deepcopy(dataset)
    oracle_dataset.PixelData = None
    oracle = oracle_dataset.to_json_dict()
    for tag in ("7FE00008", "7FE00009"):  # float pixel data lose their value too
        if tag in oracle:
            oracle[tag].pop("InlineBinary", None)
    assert oracle[PIXEL_DATA]["vr"] in {"OB", "OW", "OB or OW"}
    oracle[PIXEL_DATA]["vr"] = pixel_entry["vr"]
    assert json.dumps(_without_names(result)) == json.dumps(oracle)


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_every_test_file_with_pixels_is_pydicoms_json_model_plus_names(path: Path) -> None:
    dataset = _read(path)
    if not _pydicom_converts(dataset):
        pytest.skip(f"pydicom cannot convert {path.name} to JSON (covered above)")
    result = dcm2dict(dataset, include_pixels=True)
    json.dumps(result)
    # Same keys, same order, same values as pydicom's JSON model.
    assert json.dumps(_without_names(result)) == json.dumps(dataset.to_json_dict())
    _check_every_element(result, dataset)
    if "PixelData" in dataset:
        encoded = result[PIXEL_DATA]["InlineBinary"]
        assert base64.b64decode(encoded) == dataset.PixelData


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_path_bytes_and_dataset_inputs_agree(path: Path) -> None:
    dataset = _read(path)
    if not _pydicom_converts(dataset):
        pytest.skip(f"pydicom cannot convert {path.name} to JSON (covered above)")
    from_path = dcm2dict(str(path))
    assert dcm2dict(path) == from_path
    assert dcm2dict(path.read_bytes()) == from_path
    # A path is read with stop_before_pixels: elements after the pixel data (trailing
    # padding, signatures) are absent, everything else is as for the data set, except
    # that the VR of the unread Pixel Data is inferred from the header (Bits Allocated,
    # transfer syntax) where the data set says what the file's element had.
    from_dataset = dcm2dict(dataset)
    assert from_path.keys() <= from_dataset.keys()
    assert from_path.pop(PIXEL_DATA)["vr"] in {"OB", "OW"}
    del from_dataset[PIXEL_DATA]
    for key, entry in from_path.items():
        assert entry == from_dataset[key], key
    with_pixels = dcm2dict(str(path), include_pixels=True)
    assert with_pixels == dcm2dict(dataset, include_pixels=True)


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_dict2dcm_round_trip(path: Path) -> None:
    dataset = _read(path)
    if not _pydicom_converts(dataset):
        pytest.skip(f"pydicom cannot convert {path.name} to JSON (covered above)")
    named = dcm2dict(dataset, include_pixels=True)
    frozen = json.dumps(named)
    rebuilt = dict2dcm(named)
    assert json.dumps(named) == frozen, "dict2dcm must not modify its argument"
    assert rebuilt == Dataset.from_json(dataset.to_json_dict())


# --- pacsanini's tests and documented examples -----------------------------------------


def test_pacsanini_dcm2dict_test_round_trips_the_sop_instance_uid() -> None:
    path = next(p for p in TEST_FILES if p.name == "CT_small.dcm")
    dcm_dict = dcm2dict(str(path))
    assert isinstance(dcm_dict, dict)
    rebuilt = dict2dcm(dcm_dict)
    assert isinstance(rebuilt, Dataset)
    assert rebuilt.SOPInstanceUID == pydicom.dcmread(path).SOPInstanceUID


def test_storescp_tutorial_callback_with_partial_uploads_the_dict() -> None:
    # storescp.md: a callback bound with functools.partial converts the received data
    # set with dcm2dict and uploads it through a connection made from db_conn_str.
    uploads: list[tuple[str, dict[str, Any]]] = []

    class Connection:
        def __init__(self, conn_str: str) -> None:
            self.conn_str = conn_str

        def upload(self, document: dict[str, Any]) -> None:
            uploads.append((self.conn_str, document))

    def handle_dcm(dcm: Dataset, db_conn_str: str = "") -> None:
        conn = Connection(db_conn_str)
        conn.upload(dcm2dict(dcm))

    handle_dcm_partial = functools.partial(handle_dcm, db_conn_str="db://user@db.example.com")
    received = pydicom.dcmread(next(p for p in TEST_FILES if p.name == "MR_small.dcm"))
    pixels_before = received.PixelData
    handle_dcm_partial(received)

    [(conn_str, document)] = uploads
    assert conn_str == "db://user@db.example.com"
    assert document["00080018"]["Value"] == [received.SOPInstanceUID]
    assert document["00080018"]["Name"] == "SopInstanceUid"
    json.dumps(document)
    # A second callback still sees the pixel data (pacsanini's dcm2dict removed it).
    assert received.PixelData == pixels_before


# --- the layout, element by element ----------------------------------------------------


def _small_dataset() -> Dataset:
    dataset = Dataset()
    dataset.PatientName = "Doe^John"
    dataset.PatientID = "123"
    item_one = Dataset()
    item_one.CodeValue = "A"
    item_two = Dataset()
    item_two.CodeValue = "B"
    dataset.ViewCodeSequence = Sequence([item_one, item_two])
    dataset.Rows = 2
    return dataset


def test_layout_of_a_small_data_set() -> None:
    expected = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}], "Name": "Patient'sName"},
        "00100020": {"vr": "LO", "Value": ["123"], "Name": "PatientId"},
        "00540220": {
            "vr": "SQ",
            "Value": [
                {"00080100": {"vr": "SH", "Value": ["A"], "Name": "CodeValue"}},
                {"00080100": {"vr": "SH", "Value": ["B"], "Name": "CodeValue"}},
            ],
            "Name": "ViewCodeSequence",
        },
        "00280010": {"vr": "US", "Value": [2], "Name": "Rows"},
        # Always present without pixels; 8-bit default (no Bits Allocated) is OB.
        PIXEL_DATA: {"vr": "OB", "Name": "PixelData"},
    }
    # json.dumps compares the key order too: "Name" comes after the model's keys.
    assert json.dumps(dcm2dict(_small_dataset())) == json.dumps(expected)


def test_every_sequence_item_is_named_not_only_the_first() -> None:
    items = dcm2dict(_small_dataset())["00540220"]["Value"]
    assert [item["00080100"]["Name"] for item in items] == ["CodeValue", "CodeValue"]


def test_empty_sequence_has_an_empty_value_list() -> None:
    dataset = Dataset()
    dataset.ViewCodeSequence = Sequence()
    assert dcm2dict(dataset)["00540220"] == {"vr": "SQ", "Value": [], "Name": "ViewCodeSequence"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Patient ID", "PatientId"),
        ("SOP Instance UID", "SopInstanceUid"),
        ("Patient's Name", "Patient'sName"),
        ("[Some Private Name]", "SomePrivateName"),
        ("Private tag data", "PrivateTagData"),
        ("Private Creator", "PrivateCreator"),
        ("", ""),
    ],
)
def test_element_names_follow_pacsanini(name: str, expected: str) -> None:
    assert element_json_name(name) == expected


def test_private_elements_are_named() -> None:
    dataset = Dataset()
    block = dataset.private_block(0x0011, "ACME 1.1", create=True)
    block.add_new(0x01, "LO", "secret")
    result = dcm2dict(dataset)
    assert result["00110010"]["Name"] == "PrivateCreator"
    assert result["00111001"]["Name"] == "PrivateTagData"
    assert result["00111001"]["Value"] == ["secret"]


def test_pixel_data_vr_follows_bits_allocated_and_transfer_syntax() -> None:
    dataset = Dataset()
    dataset.BitsAllocated = 16
    assert dcm2dict(dataset)[PIXEL_DATA]["vr"] == "OW"
    dataset.BitsAllocated = 8
    assert dcm2dict(dataset)[PIXEL_DATA]["vr"] == "OB"
    dataset.BitsAllocated = 16
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    assert dcm2dict(dataset)[PIXEL_DATA]["vr"] == "OB"  # encapsulated: always OB
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assert dcm2dict(dataset)[PIXEL_DATA]["vr"] == "OW"


def test_unsupported_input_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dcm2dict(12)  # type: ignore[arg-type]

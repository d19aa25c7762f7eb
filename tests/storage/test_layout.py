"""File layouts and path safety: nothing from the peer can place a file outside data_dir."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiodicom.storage.header_scan import HeaderFields
from aiodicom.storage.layout import (
    MISSING_PATIENT_ID,
    StorageSortKey,
    UnsafePathComponent,
    final_path,
    relative_path,
    safe_component,
)

FIELDS = HeaderFields(
    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    sop_instance_uid="1.2.3.4.5.6.7",
    patient_id="PAT-01",
    study_instance_uid="1.2.3.4",
    series_instance_uid="1.2.3.4.5",
)

HOSTILE_VALUES = [
    "../../etc/passwd",
    "..",
    ".",
    "",
    "   ",
    "/",
    "/etc/passwd",
    "\\..\\..\\windows",
    "C:\\Windows",
    "a/../../b",
    "nul\x00byte",
    "ctrl\x01\x1f\x7f",
    "line\nbreak",
    "\u00e9\u00e8\u4e2d\u6587",
    "\ud800",  # a lone surrogate, as errors="surrogateescape" decoding could produce
    "...",
    ".hidden",
    "x" * 300,
    "1.2.3/4",
    "1.2.3\\4",
    "1..2",
    ".1.2",
    "1.2.",
]

SAFE_PATIENT_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def test_every_layout() -> None:
    expected = {
        StorageSortKey.PATIENT: "PAT-01/1.2.3.4/1.2.3.4.5/1.2.3.4.5.6.7.dcm",
        StorageSortKey.STUDY: "1.2.3.4/1.2.3.4.5/1.2.3.4.5.6.7.dcm",
        StorageSortKey.SERIES: "1.2.3.4.5/1.2.3.4.5.6.7.dcm",
        StorageSortKey.IMAGE: "1.2.3.4.5.6.7.dcm",
    }
    for sort_by, path in expected.items():
        assert relative_path(FIELDS, sort_by) == PurePosixPath(path)
    assert StorageSortKey("PATIENT") is StorageSortKey.PATIENT
    assert StorageSortKey.STUDY == "STUDY"  # a str enum, as pacsanini's


def test_layouts_only_need_their_own_uids() -> None:
    bare = HeaderFields(None, "1.2.3", None, None, None)
    assert relative_path(bare, StorageSortKey.IMAGE) == PurePosixPath("1.2.3.dcm")
    with pytest.raises(UnsafePathComponent):
        relative_path(bare, StorageSortKey.SERIES)
    with pytest.raises(UnsafePathComponent):
        relative_path(replace(bare, series_instance_uid="1.2"), StorageSortKey.STUDY)
    no_patient = replace(FIELDS, patient_id=None)
    assert relative_path(no_patient, StorageSortKey.PATIENT).parts[0] == MISSING_PATIENT_ID
    assert relative_path(replace(FIELDS, patient_id="  "), StorageSortKey.PATIENT).parts[0] == (
        MISSING_PATIENT_ID
    )


@pytest.mark.parametrize("value", ["1", "1.2.840.10008.1.2", "1.02.3", "9" * 64, " 1.2.3\x00"])
def test_valid_uids_are_kept(value: str) -> None:
    assert safe_component(value, kind="uid") == value.strip("\x00 ")


@pytest.mark.parametrize("value", [*HOSTILE_VALUES, None, "9" * 65, "1.2.3a", "+1.2", "1 .2"])
def test_unsafe_uids_are_rejected(value: str | None) -> None:
    with pytest.raises(UnsafePathComponent):
        safe_component(value, kind="uid")


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_patient_ids_are_mapped(value: str) -> None:
    component = safe_component(value, kind="patient_id")
    assert SAFE_PATIENT_COMPONENT.fullmatch(component), component
    assert component not in (".", "..")
    assert component == safe_component(value, kind="patient_id")  # deterministic


def test_patient_id_mapping_keeps_distinct_ids_apart() -> None:
    raw = ["A/B", "A B", "A\\B", "A_B", "A\u00e9B", "A\x00B", "x" * 64, "x" * 65, "x" * 66]
    components = [safe_component(value, kind="patient_id") for value in raw]
    assert len(set(components)) == len(raw)
    assert safe_component("A_B", kind="patient_id") == "A_B"  # safe IDs are unchanged
    assert safe_component(" A_B ", kind="patient_id") == "A_B"  # LO padding is not kept


@pytest.mark.parametrize("sort_by", list(StorageSortKey))
@pytest.mark.parametrize("hostile", HOSTILE_VALUES)
@pytest.mark.parametrize(
    "field", ["patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid"]
)
def test_traversal_attempts_stay_inside_or_are_rejected(
    tmp_path: Path, sort_by: StorageSortKey, hostile: str, field: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    fields = replace(FIELDS, **{field: hostile})
    try:
        relative = relative_path(fields, sort_by)
    except UnsafePathComponent:
        assert field != "patient_id", "a Patient ID is mapped, never rejected"
        return
    path = final_path(data_dir, relative)
    assert path.is_relative_to(data_dir.resolve())
    assert path.name.endswith(".dcm")
    assert ".." not in path.relative_to(data_dir.resolve()).parts


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    patient_id=st.one_of(st.none(), st.text(max_size=80)),
    uids=st.lists(st.one_of(st.none(), st.text(max_size=70)), min_size=3, max_size=3),
    sort_by=st.sampled_from(list(StorageSortKey)),
)
def test_any_value_lands_inside_or_is_rejected(
    tmp_path: Path, patient_id: str | None, uids: list[str | None], sort_by: StorageSortKey
) -> None:
    fields = HeaderFields("1.2", uids[0], patient_id, uids[1], uids[2])
    try:
        relative = relative_path(fields, sort_by)
    except UnsafePathComponent:
        return
    path = final_path(tmp_path, relative)
    assert path.is_relative_to(tmp_path.resolve())
    assert len(path.relative_to(tmp_path.resolve()).parts) == len(relative.parts)


def test_a_symlink_pointing_out_is_not_followed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    outside = tmp_path / "outside"
    data_dir.mkdir()
    outside.mkdir()
    (data_dir / "PAT-01").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathComponent):
        final_path(data_dir, relative_path(FIELDS, StorageSortKey.PATIENT))
    (data_dir / "1.2.3.4.5").symlink_to(outside / "deeper")  # dangling, still outside
    with pytest.raises(UnsafePathComponent):
        final_path(data_dir, relative_path(FIELDS, StorageSortKey.SERIES))


def test_symlinks_that_stay_inside_are_allowed(tmp_path: Path) -> None:
    real_data = tmp_path / "real"
    (real_data / "elsewhere").mkdir(parents=True)
    data_dir = tmp_path / "link"
    data_dir.symlink_to(real_data, target_is_directory=True)  # data_dir itself a symlink
    (real_data / "1.2.3.4.5").symlink_to(real_data / "elsewhere")
    path = final_path(data_dir, relative_path(FIELDS, StorageSortKey.SERIES))
    assert path == real_data / "elsewhere" / "1.2.3.4.5.6.7.dcm"


def test_a_symlink_at_the_file_name_is_not_resolved(tmp_path: Path) -> None:
    # The rename replaces the link itself, so the file name is not resolved.
    target = tmp_path / "outside.dcm"
    (tmp_path / "1.2.3.dcm").symlink_to(target)
    assert final_path(tmp_path, PurePosixPath("1.2.3.dcm")) == tmp_path.resolve() / "1.2.3.dcm"


@pytest.mark.parametrize("relative", ["../x.dcm", "a/../../x.dcm", "/etc/x.dcm", ".", "a/..\\b"])
def test_hand_made_relative_paths_are_checked(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePathComponent):
        final_path(tmp_path, PurePosixPath(relative))


def test_final_path_is_inside_the_real_data_dir(tmp_path: Path) -> None:
    path = final_path(tmp_path, relative_path(FIELDS, StorageSortKey.PATIENT))
    assert os.path.commonpath([path, os.path.realpath(tmp_path)]) == os.path.realpath(tmp_path)

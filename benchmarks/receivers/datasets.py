"""The benchmark's data sets, written with pydicom into a scratch folder.

* ``small``: Secondary Capture images of 32 x 32 8-bit pixels, about 2 KB a file.
* ``ct``: CT images of 512 x 512 16-bit pixels, about 525 KB a file.
* ``large``: multi-frame 16-bit images of about 96 MB; the header is written by pydicom
  and the Pixel Data element is appended frame by frame, so the generator never holds
  the pixel data (let alone two copies of it) in memory.

Every file gets its own SOP Instance UID and is written in Explicit VR Little Endian,
the transfer syntax every receiver accepts without conversion, so the bytes on the wire
are the file's data-set bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .integrity import DatasetDigest, digest_file

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MULTIFRAME_WORD_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7.3"

SMALL_SIDE = 32
CT_SIDE = 512
LARGE_SIDE = 512
# 192 frames of 512 x 512 x 2 bytes: 96 MiB of pixel data.
LARGE_FRAMES = 192

# PS3.5 7.1.2: explicit VR LE element with a 4-byte length (OW): tag, VR, 2 reserved
# bytes, length.
_LONG_ELEMENT_HEADER = struct.Struct("<HH2s2xL")
_PIXEL_DATA_TAG = (0x7FE0, 0x0010)


@dataclass(frozen=True)
class Workload:
    """One column of the result table: files, and how they are sent."""

    name: str
    description: str
    files: tuple[DatasetDigest, ...]
    associations: int = 1
    # True: DCMTK storescu with its defaults (no TCP_NODELAY in the environment).
    nagle: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(item.file_size for item in self.files)


def _base_dataset(
    sop_class_uid: str, modality: str, study_uid: str, series_uid: str, series_number: int
) -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = sop_class_uid
    dataset.StudyDate = "20240101"
    dataset.StudyTime = "120000"
    dataset.AccessionNumber = "BENCH0001"
    dataset.Modality = modality
    dataset.PatientName = "Bench^Receiver"
    dataset.PatientID = "BENCH-PATIENT"
    dataset.PatientBirthDate = "19700101"
    dataset.PatientSex = "O"
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    dataset.StudyID = "1"
    dataset.SeriesNumber = series_number
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    return dataset


def _file_meta(dataset: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _save(dataset: Dataset, path: Path) -> None:
    dataset.file_meta = _file_meta(dataset)
    dataset.save_as(path, enforce_file_format=True)


def write_small(folder: Path, count: int) -> list[Path]:
    """``count`` ~2 KB Secondary Capture files, one study and series."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = _base_dataset(SECONDARY_CAPTURE, "OT", generate_uid(), generate_uid(), 1)
    dataset.ConversionType = "WSD"
    dataset.Rows = SMALL_SIDE
    dataset.Columns = SMALL_SIDE
    dataset.BitsAllocated = 8
    dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    pattern = bytes(range(256)) * (SMALL_SIDE * SMALL_SIDE // 256)
    paths = []
    for index in range(count):
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = index + 1
        # Pixels that vary from file to file, as real images do.
        shift = index % len(pattern)
        dataset.PixelData = pattern[shift:] + pattern[:shift]
        path = folder / f"small_{index:05d}.dcm"
        _save(dataset, path)
        paths.append(path)
    return paths


def write_ct(folder: Path, count: int) -> list[Path]:
    """``count`` CT images of 512 x 512 signed 16-bit pixels (~525 KB each)."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = _base_dataset(CT_IMAGE, "CT", generate_uid(), generate_uid(), 2)
    dataset.FrameOfReferenceUID = generate_uid()
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    dataset.Rows = CT_SIDE
    dataset.Columns = CT_SIDE
    dataset.PixelSpacing = [0.7, 0.7]
    dataset.SliceThickness = 1.0
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.RescaleIntercept = -1024
    dataset.RescaleSlope = 1
    dataset.KVP = 120
    paths = []
    for index in range(count):
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = index + 1
        dataset.ImagePositionPatient = [0.0, 0.0, float(index)]
        dataset.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        dataset.PixelData = os.urandom(CT_SIDE * CT_SIDE * 2)
        path = folder / f"ct_{index:05d}.dcm"
        _save(dataset, path)
        paths.append(path)
    return paths


def write_large(folder: Path, count: int, frames: int = LARGE_FRAMES) -> list[Path]:
    """``count`` multi-frame images of ``frames`` 512 x 512 16-bit frames, streamed."""
    folder.mkdir(parents=True, exist_ok=True)
    frame_bytes = LARGE_SIDE * LARGE_SIDE * 2
    paths = []
    for index in range(count):
        dataset = _base_dataset(
            MULTIFRAME_WORD_SECONDARY_CAPTURE, "OT", generate_uid(), generate_uid(), 3
        )
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = index + 1
        dataset.NumberOfFrames = frames
        dataset.FrameIncrementPointer = 0x00181063  # Frame Time (PS3.3 C.7.6.6)
        dataset.FrameTime = 33.3
        dataset.Rows = LARGE_SIDE
        dataset.Columns = LARGE_SIDE
        dataset.BitsAllocated = 16
        dataset.BitsStored = 12
        dataset.HighBit = 11
        dataset.PixelRepresentation = 0
        path = folder / f"large_{index:02d}.dcm"
        # Pixel Data (7FE0,0010) sorts after every other element used here, so the
        # header pydicom writes can be followed directly by the element, appended.
        _save(dataset, path)
        with path.open("ab") as handle:
            handle.write(_LONG_ELEMENT_HEADER.pack(*_PIXEL_DATA_TAG, b"OW", frames * frame_bytes))
            for _frame in range(frames):
                handle.write(os.urandom(frame_bytes))
        paths.append(path)
    return paths


def digest_all(paths: Sequence[Path]) -> tuple[DatasetDigest, ...]:
    return tuple(digest_file(path) for path in paths)


def scan_folder(folder: Path) -> list[Path]:
    """The Part 10 files under ``folder`` (a user's own data set), sorted."""
    found = []
    for directory, _subdirectories, names in os.walk(folder):
        for name in names:
            path = Path(directory, name)
            with path.open("rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    found.append(path)
    return sorted(found)

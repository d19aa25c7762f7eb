"""The receiver benchmark harness (benchmarks/bench_receivers.py), run tiny: it works end
to end, and its integrity check catches what it is there to catch. No timing is
asserted: these runs are far too small to mean anything about speed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support import need_executable

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module", autouse=True)
def _benchmarks_importable() -> None:
    # The harness is a script folder, not a package of aiodicom: put it on the path
    # the way ``python benchmarks/bench_receivers.py`` does.
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))


def test_harness_runs_end_to_end(tmp_path: Path) -> None:
    need_executable("storescp")
    need_executable("storescu")
    import bench_receivers

    out = tmp_path / "results"
    status = bench_receivers.main(
        [
            "--workloads",
            "small",
            "--files",
            "20",
            "--runs",
            "1",
            "--receivers",
            "aiodicom,dcmtk-B,python-floor",
            "--sender",
            "dcmtk",
            "--no-plot",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    [result_file] = out.glob("receivers-*.json")
    document = json.loads(result_file.read_text())
    rows = {row["receiver"]: row for row in document["summary"]}
    assert set(rows) == {"aiodicom", "dcmtk-B", "python-floor"}
    for row in rows.values():
        assert row["files"] == 20
        assert row["intact"], row
        assert row["integrity"] == ["ok: 20/20 byte-identical"]
        assert row["errors"] == []
    # The reference column is the reference: its ratio to itself is exactly 1.
    assert rows["dcmtk-B"]["ratio_to_dcmtk_B"] == [1.0, 1.0, 1.0]
    assert "| small | aiodicom storescp |" in document["table_markdown"]


def test_integrity_check_catches_damage(tmp_path: Path) -> None:
    need_executable("storescu")
    from receivers import datasets, launch, senders
    from receivers.integrity import check_received, digest_file

    sent = datasets.digest_all(datasets.write_small(tmp_path / "sent", 20))
    workload = datasets.Workload("small", "20 small files", sent)
    receiver = launch.start_receiver("aiodicom", tmp_path / "cell")
    try:
        result = senders.send(
            workload, receiver.port, sender="dcmtk", log_dir=tmp_path / "logs", timeout=120
        )
    finally:
        receiver.stop()
    assert result.failures == ()
    stored = receiver.stored_dir
    assert check_received(sent, stored, require_identical=True).ok

    received = sorted(stored.rglob("*.dcm"))
    assert len(received) == 20
    victim = received[3]
    victim_uid = digest_file(victim).sop_instance_uid
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # one pixel byte, deep in the data set
    victim.write_bytes(bytes(data))
    for require_identical in (True, False):
        # Byte comparison and the decoded fallback must both see it.
        report = check_received(sent, stored, require_identical=require_identical)
        assert not report.ok
        assert report.mismatched == [victim_uid]
        assert report.summary().startswith("FAILED: 19/20 intact")

    victim.unlink()
    report = check_received(sent, stored, require_identical=True)
    assert report.missing == [victim_uid]
    assert not report.ok

    # A stray non-DICOM file (a leftover temporary file, say) fails the check too.
    victim.with_name("leftover.tmp").write_bytes(b"partial")
    report = check_received(sent, stored, require_identical=True)
    assert any(name.endswith("leftover.tmp") for name in report.not_dicom)


def test_integrity_check_compares_the_data_set_not_the_file_meta(tmp_path: Path) -> None:
    from receivers import datasets
    from receivers.integrity import check_received, split_part10

    [original] = datasets.write_small(tmp_path / "sent", 1)
    sent = datasets.digest_all([original])
    header, body = split_part10(original.read_bytes())
    assert int.from_bytes(body[:2], "little") == 0x0008  # the data set starts after group 2
    received = tmp_path / "received"
    received.mkdir()
    # Another receiver's File Meta: a different preamble and an added (0002,0016)
    # Source AE Title (explicit VR LE, AE, length 6). The data set is the same instance.
    source_ae_title = b"\x02\x00\x16\x00AE\x06\x00BENCH "
    (received / "copy.dcm").write_bytes(b"\x01" * 128 + header[128:] + source_ae_title + body)
    assert check_received(sent, received, require_identical=True).ok

"""Benchmark of the DIMSE codec: command decode/encode times, reassembly throughput.

Run: ``python benchmarks/bench_dimse.py``. Every figure is the median of several runs.
Targets (see the common brief): a C-STORE-RQ decoded in < 20 microseconds; the
reader + assembler carrying >= 1 GB/s of P-DATA payload on one core (the assembler's
share of that budget is what is measured here).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from aiodicom.protocol.dimse import CStoreRQ, CStoreRSP, Status, decode_command, encode_command
from aiodicom.protocol.dimse_stream import MessageAssembler, encode_message
from aiodicom.protocol.pdu import PDVFragment

RUNS = 9

# A typical C-STORE-RQ: CT Image Storage, a 56-character instance UID, as a C-MOVE
# sub-operation (so the optional elements are there too).
STORE_RQ = CStoreRQ(
    message_id=4242,
    affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    affected_sop_instance_uid="1.2.826.0.1.3680043.8.498.12345678901234567890123456789",
    move_originator_ae_title="MOVESCU",
    move_originator_message_id=7,
)
STORE_RSP = CStoreRSP(
    message_id_being_responded_to=4242,
    status=Status.SUCCESS,
    affected_sop_class_uid=STORE_RQ.affected_sop_class_uid,
    affected_sop_instance_uid=STORE_RQ.affected_sop_instance_uid,
)


def median_seconds_per_call(function: Callable[[], object], calls: int) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def assembler_throughput(fragment_length: int, total_bytes: int) -> float:
    """MB/s of data-set payload through MessageAssembler.feed, fragments pre-built."""
    command = encode_command(STORE_RQ)
    buffer = memoryview(bytearray(fragment_length))
    count = total_bytes // fragment_length
    # What a PDU reader hands out: views of its buffer, one complete PDV each.
    middle = PDVFragment(1, False, False, True, buffer)
    last = PDVFragment(1, False, True, True, buffer)
    fragments = [middle] * (count - 1) + [last]
    command_fragment = PDVFragment(1, True, True, True, memoryview(command))
    samples = []
    for _ in range(RUNS):
        assembler = MessageAssembler()
        feed = assembler.feed
        start = time.perf_counter()
        feed(command_fragment)
        for fragment in fragments:
            feed(fragment)
        elapsed = time.perf_counter() - start
        samples.append(count * fragment_length / elapsed / 1e6)
    return statistics.median(samples)


def encode_throughput(max_pdu_length: int, dataset_length: int) -> float:
    """MB/s of encode_message on a whole in-memory data set (a copy: the small path)."""
    command = encode_command(STORE_RQ)
    dataset = bytes(dataset_length)
    seconds = median_seconds_per_call(
        lambda: encode_message(1, command, dataset, max_pdu_length), 3
    )
    return dataset_length / seconds / 1e6


def main() -> None:
    wire = encode_command(STORE_RQ)
    assert decode_command(wire) == STORE_RQ
    decode = median_seconds_per_call(lambda: decode_command(wire), 20_000)
    encode_rq = median_seconds_per_call(lambda: encode_command(STORE_RQ), 20_000)
    encode_rsp = median_seconds_per_call(lambda: encode_command(STORE_RSP), 20_000)
    print(f"decode C-STORE-RQ ({len(wire)} bytes): {decode * 1e6:6.2f} us  (target < 20 us)")
    print(f"encode C-STORE-RQ:                  {encode_rq * 1e6:6.2f} us")
    print(f"encode C-STORE-RSP:                 {encode_rsp * 1e6:6.2f} us")
    for fragment_length, total in ((16 * 1024, 256 * 1024 * 1024), (1024 * 1024, 2 << 30)):
        rate = assembler_throughput(fragment_length, total)
        print(
            f"MessageAssembler, {fragment_length // 1024:5d} KiB fragments: "
            f"{rate:12,.0f} MB/s of data set"
        )
    for max_pdu_length in (16 * 1024, 1024 * 1024):
        rate = encode_throughput(max_pdu_length, 64 * 1024 * 1024)
        print(
            f"encode_message, 64 MiB data set, {max_pdu_length // 1024:5d} KiB PDUs: "
            f"{rate:8,.0f} MB/s"
        )


if __name__ == "__main__":
    main()

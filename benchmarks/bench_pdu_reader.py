"""Throughput of PDUReader on P-DATA-TF streams: MB/s of PDV payload handed out.

Run: ``python benchmarks/bench_pdu_reader.py``. Builds a stream of data-set P-DATA-TF PDUs
(one PDV each, as storescu sends them), feeds it in fixed-size chunks the way a socket read
loop would, and consumes every item. Reports the median over several repetitions of
payload bytes per second (the PDU and PDV headers are not counted).

Two consumers are measured: "reader only" (items taken, fragment data not touched: the
cost of framing alone) and "+ memcpy" (every fragment's bytes also copied into a reused
buffer: a stand-in for the cheapest thing a consumer can do with the data, which shows
the memory bandwidth the zero-copy reader does not spend).
"""

from __future__ import annotations

import argparse
import statistics
import time

from aiodicom.protocol.pdu import PDVFragment
from aiodicom.protocol.pdu_codec import encode_pdata_header, encode_pdv_header
from aiodicom.protocol.pdu_reader import PDUReader

MIB = 1 << 20


def build_stream(pdu_body_length: int, total_payload: int) -> tuple[bytes, int]:
    """P-DATA-TF PDUs of ``pdu_body_length`` bytes, data-set PDVs, about ``total_payload``."""
    data_length = pdu_body_length - 6  # PS3.8 9.3.5.1: 4-byte length + ID + control header
    fragment = bytes(range(256)) * (data_length // 256) + bytes(data_length % 256)
    count = max(1, total_payload // data_length)
    parts = []
    for index in range(count):
        parts.append(encode_pdata_header(pdu_body_length))
        parts.append(encode_pdv_header(1, False, index == count - 1, data_length))
        parts.append(fragment)
    return b"".join(parts), count * data_length


def run_once(chunks: list[memoryview], max_pdata_length: int, copy: bool) -> tuple[float, int]:
    reader = PDUReader()
    reader.max_pdata_length = max_pdata_length
    feed = reader.feed
    next_item = reader.next_item
    payload = 0
    sink = bytearray(max_pdata_length)
    started = time.perf_counter()
    for chunk in chunks:
        feed(chunk)
        while (item := next_item()) is not None:
            if type(item) is PDVFragment:
                size = len(item.data)
                payload += size
                if copy:
                    sink[:size] = item.data  # same length: a plain memcpy
    elapsed = time.perf_counter() - started
    assert reader.at_pdu_boundary
    return elapsed, payload


def bench(pdu_body_length: int, chunk_size: int, total: int, repeats: int, copy: bool) -> None:
    stream, expected = build_stream(pdu_body_length, total)
    view = memoryview(stream)
    # Slice the stream up front: a socket read hands over a fresh bytes object each time,
    # so slicing is not part of the reader's cost.
    chunks = [view[start : start + chunk_size] for start in range(0, len(stream), chunk_size)]
    rates = []
    for _ in range(repeats):
        elapsed, payload = run_once(chunks, pdu_body_length, copy)
        assert payload == expected
        rates.append(payload / elapsed)
    median = statistics.median(rates)
    label = "+ memcpy" if copy else "reader only"
    print(
        f"PDU {pdu_body_length // 1024:>5} KiB  chunks {chunk_size // 1024:>4} KiB  "
        f"{label:<11}  median {median / 1e6:>10,.0f} MB/s ({median / 1e9:6.2f} GB/s)  "
        f"min {min(rates) / 1e6:,.0f}  max {max(rates) / 1e6:,.0f}  "
        f"[{repeats} runs of {expected / MIB:.0f} MiB]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=256, help="payload per run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    total = args.total_mib * MIB
    for pdu_body_length, chunk_size in [
        (16 * 1024, 64 * 1024),
        (MIB, 64 * 1024),
        (16 * 1024, 256 * 1024),
        (MIB, 256 * 1024),
    ]:
        for copy in (False, True):
            bench(pdu_body_length, chunk_size, total, args.repeats, copy)


if __name__ == "__main__":
    main()

"""The fuzz suite's long mode, on demand (not collected by pytest).

    python tests/robustness/run_long.py --cases 100000            # a new random seed
    python tests/robustness/run_long.py --cases 100000 --seed 7   # repeat a run
    python tests/robustness/run_long.py --seed 7 --case 4242      # one case, in detail

Runs ``aiodicom storescp`` in a child process, as the quick mode does, and prints the
counts: cases, answered by A-ASSOCIATE-RJ / A-ABORT / close, valid sessions, crashes
and hangs (both must be 0), the server's memory and descriptors before and after.
Exits 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_cases import generate_case
from fuzz_runner import SERVER_ARGS, ScpProcess, fuzz, judge, run_case

# Over 100,000 cases a leak of 100 bytes per case would show as 10 MB.
RSS_BOUND = 16 * 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="default: a new random seed")
    parser.add_argument("--case", type=int, default=None, help="run this one case and explain")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--batch", type=int, default=5000, help="cases between health checks")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data and log here")
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else random.randrange(1, 2**31)
    print(f"seed {seed}", flush=True)
    if arguments.case is not None:
        return anyio.run(_one_case, seed, arguments.case)
    if arguments.workdir is not None:
        arguments.workdir.mkdir(parents=True, exist_ok=True)
        return anyio.run(_long, arguments, seed, arguments.workdir)
    with tempfile.TemporaryDirectory(prefix="aiodicom-fuzz-") as folder:
        return anyio.run(_long, arguments, seed, Path(folder))


async def _long(arguments: argparse.Namespace, seed: int, workdir: Path) -> int:
    started = time.monotonic()
    report = await fuzz(
        workdir,
        seed=seed,
        cases=arguments.cases,
        concurrency=arguments.concurrency,
        batch=arguments.batch,
        warmup=min(1000, arguments.cases),
        progress=True,
    )
    print(report.text())
    print(f"layers: {dict(report.tally.layers)}")
    print(f"statuses: { {f'0x{k:04X}': v for k, v in sorted(report.tally.statuses.items())} }")
    for explained in report.explained_problems()[:5]:
        print(f"caused by a known bug: {explained}")
    failures = report.failures(RSS_BOUND)
    for failure in failures:
        print(f"FAILURE: {failure}")
    print(f"total {time.monotonic() - started:.0f} s; {'FAILED' if failures else 'OK'}")
    return 1 if failures else 0


async def _one_case(seed: int, index: int) -> int:
    case = generate_case(seed, index)
    print(
        f"{case.label}: {len(case.data)} bytes, A-ASSOCIATE-RQ ends at {case.rq_end}, "
        f"{len(case.splits)} cuts; expects {sorted(case.expect)}"
    )
    print(f"first bytes: {case.data[:96].hex(' ')}")
    with tempfile.TemporaryDirectory(prefix="aiodicom-fuzz-") as folder:
        server = ScpProcess(Path(folder) / "data", Path(folder) / "server.log", SERVER_ARGS)
        port = server.start()
        try:
            result = await run_case(port, case, 5.0)
        finally:
            server.stop()
        print(f"result: {result}")
        problems = judge(case, result)
        print("problems: " + ("; ".join(problems) or "none"))
        print("server log:\n" + server.log_text()[-4000:])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

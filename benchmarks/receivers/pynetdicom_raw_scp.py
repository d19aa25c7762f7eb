"""A pynetdicom Storage SCP that writes each data set as received, without decoding it.

This is the fastest way to receive with pynetdicom (``Event.encoded_dataset()``, added
in pynetdicom 2.1): the bytes the peer sent are written after a preamble and File Meta
group. It is the benchmark's stand-in for "pynetdicom done well".

Run: ``python pynetdicom_raw_scp.py PORT OUTPUT_DIR`` (binds 127.0.0.1; Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.events import Event

# PS3.5 9.1: a UID holds digits and dots only, so such a name cannot leave OUTPUT_DIR.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_SUCCESS = 0x0000
_CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3: failure, cannot understand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--max-associations", type=int, default=16)
    arguments = parser.parse_args()
    output_dir: Path = arguments.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)

    def handle_store(event: Event) -> int:
        uid = str(getattr(event.request, "AffectedSOPInstanceUID", ""))
        if not _UID.fullmatch(uid):
            return _CANNOT_UNDERSTAND
        # include_meta=True: preamble + "DICM" + File Meta + the data set bytes as sent.
        (output_dir / f"{uid}.dcm").write_bytes(event.encoded_dataset(include_meta=True))
        return _SUCCESS

    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_associations = arguments.max_associations
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    print(f"pynetdicom raw SCP: listening on port {arguments.port}", flush=True)
    # block=True: serve_forever in this thread; Ctrl-C (SIGINT) shuts the server down.
    ae.start_server(
        ("127.0.0.1", arguments.port),
        block=True,
        evt_handlers=[(evt.EVT_C_STORE, handle_store)],
    )


if __name__ == "__main__":
    main()

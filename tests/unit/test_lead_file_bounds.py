"""Lead files are read in bounded chunks: a huge or endless file is refused with one clear line."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.ingest.leads import LeadFileError, parse_lead_file

HEADER = "company,email\n"


def test_a_file_above_the_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text(HEADER + "Acme,a@acme.test\n" * 20_000)  # about 340 KB
    with pytest.raises(LeadFileError, match="larger than 0 MB"):
        parse_lead_file(path, max_bytes=100_000)
    assert len(parse_lead_file(path, max_bytes=1_000_000).leads) == 1  # 19,999 duplicates


def test_an_endless_text_stream_stops_at_the_cap(tmp_path: Path) -> None:
    fifo = tmp_path / "endless.csv"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer() -> None:
        # The reader closes the pipe at the cap: any write, or the flush on close, may see EPIPE.
        with contextlib.suppress(BrokenPipeError), fifo.open("w") as out:
            out.write(HEADER)
            while not stop.is_set():
                out.write("Acme,a@acme.test\n" * 1000)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(LeadFileError, match="larger than 2 MB"):
            parse_lead_file(fifo, max_bytes=2_000_000)
    finally:
        stop.set()
        thread.join(timeout=5)


def test_validate_dev_zero_ends_at_once_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "validate", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "error: /dev/zero: file looks binary (contains NUL bytes)\n"

"""Ctrl-C stops a conversion promptly, even while it waits for a slow source."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import io, os, signal, sys, time
    import s3proc

    signal.signal(signal.SIGINT, signal.default_int_handler)

    class Trickle(io.RawIOBase):
        # 5 MiB at once (enough to sniff), then four bytes every 50 ms for ever.
        def __init__(self):
            self.fast = b"a,b\\n" + b"1,2\\n" * (5 << 18)

        def readable(self):
            return True

        def readinto(self, buf):
            if self.fast:
                n = min(len(buf), len(self.fast))
                buf[:n], self.fast = self.fast[:n], self.fast[n:]
                return n
            time.sleep(0.05)
            buf[:4] = b"3,4\\n"
            return 4

    chunks = s3proc.ParquetChunks(io.BufferedReader(Trickle()), chunk_size=1 << 30)
    print("ready", flush=True)
    start = time.monotonic()
    try:
        next(chunks)
        print("no interrupt", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic() - start:.2f}", flush=True)
    # The reader thread still sleeps in the source's read(): leave without
    # waiting for it.
    os._exit(0)
    """
)


def test_ctrl_c_interrupts_a_waiting_conversion() -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        waited = time.monotonic() - sent
        assert child.wait(timeout=10) == 0
    assert line.startswith("interrupted"), line
    assert waited < 2.0, f"took {waited:.2f} s to honour Ctrl-C"

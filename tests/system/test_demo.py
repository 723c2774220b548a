# `leither demo` is what `make demo` runs on a fresh clone: the whole story must go through.
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_demo_tells_the_whole_story(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, LEITHER_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "leither_host", "demo", "--board", "unix"],
                          env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for step in ("claimed board1", "paired with", "(version 1 read back byte-identical)",
                 "falls back to its partner", "read back byte-identical through the partner",
                 "every version verified", "1 receipts paid", "has balance",
                 "demo finished"):
        assert step in out, f"demo output lacks {step!r}:\n{out[-4000:]}"


# The same story on ESP32 stand-ins at the board's heap (issue 9's goal for `make demo`):
# discovery, claims, file and db MiMei, pairing, the backup, the audit, failover reads and
# the restore, every step, at 111,936 bytes of heap.
class StoryIncomplete(AssertionError):
    """The ESP32 demo stopped before its end."""


@pytest.mark.slow
def test_demo_on_esp32_boards(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import esp32_standin

    esp32_standin()  # skips, saying why, where the stand-in cannot be built
    env = dict(os.environ, LEITHER_HOME=str(tmp_path))
    # `leither demo` with no --board: what `make demo` runs.
    proc = subprocess.run([sys.executable, "-m", "leither_host", "demo"],
                          env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert "simulated ESP32 boards" in out and "111936-byte heap" in out
    assert "paired with" in out, out[-4000:]  # the part that fits today must keep working
    missing = [step for step in ("read back byte-identical through the partner",
                                 "every version verified", "demo finished") if step not in out]
    if proc.returncode != 0 or missing:
        raise StoryIncomplete(f"exit {proc.returncode}, lacks {missing}:\n{out[-3000:]}")

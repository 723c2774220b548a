# `leither demo` is what `make demo` runs on a fresh clone: the whole story must go through.
from __future__ import annotations

import os
import subprocess
import sys


def test_demo_tells_the_whole_story(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, LEITHER_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "leither_host", "demo"], env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for step in ("claimed board1", "paired with", "(version 1 read back byte-identical)",
                 "falls back to its partner", "read back byte-identical through the partner",
                 "every version verified", "1 receipts paid", "has balance",
                 "demo finished"):
        assert step in out, f"demo output lacks {step!r}:\n{out[-4000:]}"

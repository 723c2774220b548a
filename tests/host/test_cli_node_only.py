# A node-only install (a Pi's `pip install .`) has the `leither` command but not the host
# extra: the command says what to install, in one line, instead of a traceback.
from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tinydb", "zeroconf", "rich"):
            raise ModuleNotFoundError("No module named %r" % name, name=name)
sys.meta_path.insert(0, Block())
from leither_host.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_missing_host_extra_is_one_line() -> None:
    got = subprocess.run([sys.executable, "-c", BLOCK, "ls"], capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 1, got.stderr
    assert "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'leither-boards[host]'" in lines[0], got.stderr

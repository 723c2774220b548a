# The ROMFS image `leither flash` deploys to an ESP32's ROM partition, tested here: mounted with
# vfs.VfsRom on the 32-bit stand-in, the node is imported from it (not from the frozen copy)
# and runs: boots, answers RPC. The image has the board's parts (board.json "bundle_parts":
# none, so no db engine and no mDNS responder): the node says so, browses only, and refuses a
# db MiMei plainly.
# The unix build has VfsRom but no ROM partition, so the image is read into a buffer first;
# the heap is the board's plus that buffer (a board maps the partition from flash).
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leither_host import romfs
from leither_host.errors import CliError

RUNNER = """import os, sys, vfs
path = sys.argv[1]
buf = bytearray(os.stat(path)[6])  # first, so it is one block at the heap's start
with open(path, "rb") as f:
    f.readinto(buf)
vfs.mount(vfs.VfsRom(buf), "/rom")
sys.path[:] = ["/rom/lib", ".frozen"]  # ROMFS first: the frozen leither must not answer
import leither
print("leither from", leither.__file__)
from leither.node import main
main(sys.argv[2:])
"""


# Owner calls straight to the node (no host-side check in the way).
CALLER = """import json, sys
from leither.errors import RPCError
from leither_host.client import collect_pages
from leither_host.nodes import open_node
session, _ = open_node(sys.argv[1])
out = {}
with session:
    out["parts"] = session.call("GetVar", {"name": "parts"})
    try:
        session.call("MMCreate", {"app": "cfg", "ext": "", "mark": "", "type": "db"})
        out["db"] = None
    except RPCError as err:
        out["db"] = [err.code, err.msg]
    out["list"] = [m.get("mid") or m.get("id") if isinstance(m, dict) else m
                   for m in collect_pages(session.call, "MMList")]
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_romfs_image_runs_the_node_on_the_standin(tmp_path: Path) -> None:
    from conftest import esp32_heap, esp32_standin

    standin = esp32_standin()
    image = romfs.build_image("esp32", out=tmp_path / "esp32.romfs", extra_ports=("unix", "posix"))
    data = image.path.read_bytes()
    assert data[:3] == b"\xd2\xcd\x31" and image.size == len(data)  # a ROMFS header
    assert image.files > 30 and image.bundle_bytes < image.size
    (tmp_path / "run.py").write_text(RUNNER)
    port = _free_port()
    heap = esp32_heap() + image.size + 64  # the board's heap beside the image's buffer
    # The board's bundle, as board.json has it: the core only (leither.parts): no db engine, no
    # mDNS responder (stock firmware's own holds UDP 5353: the node browses only).
    assert image.left_out == ["db", "mdns_responder"] and list(image.part_bytes) == ["core"]
    log_path = tmp_path / "node.log"
    env = dict(os.environ, MICROPYPATH=".frozen")
    token = "5eed" * 4
    with log_path.open("wb") as log:
        node = subprocess.Popen([str(standin), "-X", f"heapsize={heap}", "run.py",
                                 str(image.path), "--root", str(tmp_path / "root"), "--port",
                                 str(port), "--addr", "127.0.0.1", "--name", "romfs1",
                                 "--claim-token", token],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while " ready" not in log_path.read_text(errors="replace"):
            assert node.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        text = log_path.read_text()
        assert "leither from /rom/lib/leither/__init__.mpy" in text
        deadline = time.monotonic() + 30
        while "not advertised" not in log_path.read_text(errors="replace"):
            assert node.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert "mdns: this board's bundle has no mDNS responder" in log_path.read_text()
        host_env = dict(os.environ, LEITHER_HOME=str(tmp_path / "h"))

        def leither(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "leither_host", *args],
                                  capture_output=True, text=True, timeout=60, env=host_env)

        proc = leither("status", f"127.0.0.1:{port}", "--json")
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        assert status["name"].startswith("romfs1") and status["heap_bytes"] > 0
        node_id = re.search(r"leither: node (\S+) name", text).group(1)  # type: ignore[union-attr]
        proc = leither("claim", f"127.0.0.1:{port}", "--id", node_id, "--token", token)
        assert proc.returncode == 0, proc.stderr
        proc = leither("status", f"127.0.0.1:{port}")  # the owner sees the node's parts
        assert proc.returncode == 0 and "optional parts" in proc.stdout, proc.stdout
        assert "has no db engine, no mDNS responder" in proc.stdout
        proc = leither("--json", "status", f"127.0.0.1:{port}")
        assert json.loads(proc.stdout)["parts"] == [], proc.stdout
        # The node says which parts it has; the host refuses a db MiMei before trying ...
        proc = leither("mm", "create", f"127.0.0.1:{port}", "--app", "cfg", "--type", "db")
        assert proc.returncode == 1 and "has no db engine" in proc.stderr, proc.stderr
        assert "flash the frozen firmware" in proc.stderr
        # ... and the node itself answers no_part, keeping nothing.
        proc = subprocess.run([sys.executable, "-c", CALLER, f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60, env=host_env)
        assert proc.returncode == 0, proc.stderr
        answers = json.loads(proc.stdout)
        assert answers["parts"] == []  # neither optional part
        assert answers["db"][0] == "no_part" and "has no db engine" in answers["db"][1]
        assert answers["list"] == []
        assert "MemoryError" not in log_path.read_text()
    finally:
        node.kill()
        node.wait(10)


def test_image_too_big_for_the_partition_is_refused_plainly(tmp_path: Path) -> None:
    image = romfs.RomImage("esp32", tmp_path / "x.romfs", 200_000, 190_000, 40)
    with pytest.raises(CliError, match="frozen in instead"):
        romfs.check_fits(image, 131072)
    romfs.check_fits(image, 262144)

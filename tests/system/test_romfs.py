# The ROMFS image `leither flash` deploys to an ESP32's ROM partition, tested here: mounted with
# vfs.VfsRom on the 32-bit stand-in, the node is imported from it (not from the frozen copy)
# and runs: boots, answers RPC. The image has the board's parts (board.json "bundle_parts": the
# db engine; no mDNS responder, no pairing and backup): the node says so, browses only, keeps a
# db MiMei, and answers pairing and backup plainly, at the host, at its RPC and at its button.
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
    out["file"] = session.call("MMCreate", {"app": "cfg", "ext": "", "mark": "", "type": "file"})
    out["refused"] = {}
    for method, params in (("BackupStatus", {}), ("PairOpen", {}), ("BackupRestore", {}),
                           ("GetReceipts", {})):
        try:
            session.call(method, params)
        except RPCError as err:
            out["refused"][method] = [err.code, err.msg]
    out["heap"] = session.call("GetVar", {"name": "heap"})
    out["list"] = [m.get("mid") or m.get("id") if isinstance(m, dict) else m
                   for m in collect_pages(session.call, "MMList")]
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(node: subprocess.Popen[bytes], log_path: Path, text: str, secs: float) -> None:
    deadline = time.monotonic() + secs
    while text not in log_path.read_text(errors="replace"):
        assert node.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def test_romfs_image_runs_the_node_on_the_standin(tmp_path: Path) -> None:
    from conftest import esp32_heap, esp32_standin

    standin = esp32_standin()
    image = romfs.build_image("esp32", out=tmp_path / "esp32.romfs", extra_ports=("unix", "posix"))
    data = image.path.read_bytes()
    assert data[:3] == b"\xd2\xcd\x31" and image.size == len(data)  # a ROMFS header
    assert image.files > 30 and image.bundle_bytes < image.size
    (tmp_path / "run.py").write_text(RUNNER)
    port = _free_port()
    # The board's bundle, as board.json has it (leither.parts): the core and the db engine; no
    # mDNS responder (stock firmware's own holds UDP 5353: the node browses only), so no button
    # pairing, and so no backup or restore either.
    assert image.left_out == ["mdns_responder", "backup"]
    assert list(image.part_bytes) == ["core", "db"]
    env = dict(os.environ, MICROPYPATH=".frozen")
    token = "5eed" * 4

    def start(heap: int, log_path: Path) -> subprocess.Popen[bytes]:
        heap += image.size + 64  # the board's heap beside the image's buffer
        with log_path.open("wb") as log:
            return subprocess.Popen([str(standin), "-X", f"heapsize={heap}", "run.py",
                                     str(image.path), "--root", str(tmp_path / "root"),
                                     "--port", str(port), "--addr", "127.0.0.1", "--name",
                                     "romfs1", "--claim-token", token],
                                    cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    host_env = dict(os.environ, LEITHER_HOME=str(tmp_path / "h"))

    def leither(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "leither_host", *args],
                              capture_output=True, text=True, timeout=60, env=host_env)

    # An ESP32-WROOM's heap: it boots, is claimed and answers its owner.
    log_path = tmp_path / "node.log"
    node = start(esp32_heap(), log_path)
    try:
        _wait_for(node, log_path, " ready", 60)
        text = log_path.read_text()
        assert "leither from /rom/lib/leither/__init__.mpy" in text
        _wait_for(node, log_path, "not advertised", 30)
        assert "mdns: this board's bundle has no mDNS responder" in log_path.read_text()
        proc = leither("status", f"127.0.0.1:{port}", "--json")
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        assert status["name"].startswith("romfs1") and status["heap_bytes"] > 0
        node_id = re.search(r"leither: node (\S+) name", text).group(1)  # type: ignore[union-attr]
        proc = leither("claim", f"127.0.0.1:{port}", "--id", node_id, "--token", token)
        assert proc.returncode == 0, proc.stderr
        assert "has no backup, so no backup key to escrow" in proc.stdout, proc.stdout
        proc = leither("status", f"127.0.0.1:{port}")  # the owner sees the node's parts
        assert proc.returncode == 0 and "optional parts" in proc.stdout, proc.stdout
        assert "db (this board's bundle has no mDNS responder, no pairing and backup)" \
            in proc.stdout, proc.stdout
        assert "none: this board's bundle has no pairing and backup" in proc.stdout
        proc = leither("--json", "status", f"127.0.0.1:{port}")
        assert json.loads(proc.stdout)["parts"] == ["db"], proc.stdout
        # Pairing and backup verbs get one plain line, not a traceback or "no method".
        for verb in (("backup", "status"), ("pair",), ("pair", "--status")):
            proc = leither(*verb, f"127.0.0.1:{port}")
            assert proc.returncode == 1, (verb, proc.stdout, proc.stderr)
            assert "has no pairing and backup" in proc.stderr, (verb, proc.stderr)
            assert "flash the frozen firmware" in proc.stderr and "Traceback" not in proc.stderr
        # The node itself answers no_part for the part's methods, and keeps a file MiMei.
        proc = subprocess.run([sys.executable, "-c", CALLER, f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60, env=host_env)
        assert proc.returncode == 0, proc.stderr
        answers = json.loads(proc.stdout)
        assert answers["parts"] == ["db"]
        assert answers["list"] == [answers["file"]]
        assert sorted(answers["refused"]) == ["BackupRestore", "BackupStatus", "GetReceipts",
                                              "PairOpen"], answers
        for code, msg in answers["refused"].values():
            assert code == "no_part" and "has no pairing and backup" in msg, msg
        print("ROMFS node at the ESP32's heap: free after claim and a file MiMei:",
              answers["heap"])
        # A button press (the unix board's file) says why nothing pairs, and blinks "failed".
        (tmp_path / "root" / "gpio" / "button").write_text("short")
        _wait_for(node, log_path, "press: this board's bundle has no pairing and backup", 10)
        assert "MemoryError" not in log_path.read_text()
    finally:
        node.kill()
        node.wait(10)
    # Code in ROMFS still takes heap for its names and function records: at the WROOM's heap a
    # ROMFS node has ~20 KB left once its store is open (printed above),
    # so the db engine is for boards with more heap (PSRAM), the ones way 2 is for. There:
    log_path = tmp_path / "node2.log"
    node = start(4 * esp32_heap(), log_path)
    try:
        _wait_for(node, log_path, " ready", 60)
        proc = leither("mm", "create", f"127.0.0.1:{port}", "--app", "kv", "--type", "db",
                       "--json")
        assert proc.returncode == 0, proc.stderr
        mid = json.loads(proc.stdout)["mid"]
        proc = leither("db", f"127.0.0.1:{port}", mid, "Set", "greeting", "hello")
        assert proc.returncode == 0, proc.stderr
        proc = leither("db", f"127.0.0.1:{port}", mid, "Get", "greeting")
        assert proc.returncode == 0 and proc.stdout.strip() == "hello", proc.stderr
        assert "MemoryError" not in log_path.read_text()
    finally:
        node.kill()
        node.wait(10)


def test_image_too_big_for_the_partition_is_refused_plainly(tmp_path: Path) -> None:
    image = romfs.RomImage("esp32", tmp_path / "x.romfs", 200_000, 190_000, 40)
    with pytest.raises(CliError, match="frozen in instead"):
        romfs.check_fits(image, 131072)
    romfs.check_fits(image, 262144)

# The `leither` command's own manners, through the real entry point, without boards: help when
# called bare, the verb's usage for a typo, --json before the verb, a closed pipe, Ctrl-C, an
# address answered by something that is not a Leither node, tables in human units with JSON in
# raw numbers, db methods in any case, the inventory verbs, and completion scripts.
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from leither_host.commands import db as dbverb
from leither_host.errors import CliError
from leither_host.output import human_bytes, human_duration, print_table

BAD = ("Traceback", "Task exception", "never awaited", "[Errno")


def leither(home: Path, *args: str, stdin: str | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LEITHER_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "leither_host", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    for bad in BAD:
        assert bad not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_bare_help_typos_and_global_json(tmp_path: Path) -> None:
    bare = leither(tmp_path)
    assert bare.returncode == 0 and bare.stdout.startswith("usage: leither")
    assert "ls" in bare.stdout and "logs" in bare.stdout
    typo = leither(tmp_path, "mm", "ls", "board1", "--jsn")
    assert typo.returncode == 2
    assert typo.stderr.startswith("usage: leither mm ls") and "--jsn" in typo.stderr
    half = leither(tmp_path, "mm")
    assert half.returncode == 2 and "usage: leither mm" in half.stdout
    assert "versions" in half.stdout
    assert json.loads(leither(tmp_path, "--json", "discover", "--known").stdout) == []
    audit = leither(tmp_path, "backup", "audit", "board1", "--count", "100")
    assert audit.returncode == 2 and "challenges 1 to 64" in audit.stderr


def _fleet(home: Path, rows: list[dict[str, object]]) -> None:
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "data" / "fleet.json").write_text(json.dumps(
        {"nodes": {str(i + 1): r for i, r in enumerate(rows)}}))


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    # Far more than a pipe holds, so the writer meets the closed pipe (`| head -1`).
    _fleet(tmp_path, [{"id": f"3xN{i:025d}", "name": f"n{i}", "host": "10.9.0.1", "port": i}
                      for i in range(3000)])
    env = dict(os.environ, LEITHER_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "leither_host", "discover", "--known"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"name")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err == "" and proc.returncode == 141


def test_ctrl_c_is_one_line_and_130(tmp_path: Path) -> None:
    env = dict(os.environ, LEITHER_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "leither_host", "completion", "bash"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.wait(timeout=60)
    # A verb blocked reading its input (`mm put NODE MID -` waiting on stdin): SIGINT.
    _fleet(tmp_path, [])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "leither_host", "status",
                             f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = listener.accept()  # the CLI is now inside its handshake, in asyncio
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        conn.close()
    finally:
        listener.close()
    assert proc.returncode == 130, err
    assert err.strip() == "leither: interrupted" and out == ""


@pytest.fixture
def not_leither() -> Iterator[int]:
    """An HTTP-ish server on loopback: it answers anything with an HTTP error."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    done = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join(2)
    server.close()


def test_a_service_that_is_not_leither(tmp_path: Path, not_leither: int) -> None:
    for verb in (["status"], ["mm", "ls"], ["logs"]):
        proc = leither(tmp_path, *verb, f"127.0.0.1:{not_leither}")
        assert proc.returncode == 1, proc.stderr
        assert "is not a Leither node" in proc.stderr and "bytes over the limit" not in \
            proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1


def test_inventory_verbs_and_units(tmp_path: Path) -> None:
    _fleet(tmp_path, [
        {"id": "3xNu9U3uLq7R6GvMd5HL6z33XcPs", "name": "kitchen", "host": "127.0.0.1",
         "port": 9, "seen": int(time.time()) - 300, "txt": {"free": "81230"}},
        {"id": "2ZYXGLhmxUyqb4SyoF111111111", "name": "attic", "host": "127.0.0.1",
         "port": 9},
    ])
    known = leither(tmp_path, "discover", "--known").stdout
    assert "79.3 MiB" in known and "81230" not in known  # KiB in the TXT, human here
    as_json = json.loads(leither(tmp_path, "discover", "--known", "--json").stdout)
    assert [n["free_bytes"] for n in as_json] == [None, 81230 * 1024]
    ls = leither(tmp_path, "ls", "--timeout", "2")
    assert ls.returncode == 0
    lines = ls.stdout.splitlines()
    assert lines[0].split() == ["name", "id", "state", "board", "fw", "partner", "backup",
                                "free", "heap"]
    assert lines[3].startswith("kitchen") and "offline, seen 5 min ago" in lines[3]
    assert "never seen" in lines[2]
    status = leither(tmp_path, "status", "kitchen")
    assert status.returncode == 0 and "offline, last seen 5 min ago" in status.stdout
    assert "nothing answers at 127.0.0.1:9" in status.stdout
    renamed = leither(tmp_path, "rename", "3xNu", "pantry", "--local")
    assert renamed.returncode == 0 and "renamed kitchen" in renamed.stdout
    taken = leither(tmp_path, "rename", "pantry", "attic", "--local")
    assert taken.returncode == 1 and "taken by 2ZYXGL" in taken.stderr
    bad = leither(tmp_path, "rename", "pantry", "a/b", "--local")
    assert bad.returncode == 1 and "letters, digits" in bad.stderr
    assert leither(tmp_path, "forget", "pantry").stdout.startswith("forgot pantry (3xNu9U")
    gone = leither(tmp_path, "status", "pantry")
    assert gone.returncode == 1 and gone.stderr.startswith("leither: no node named 'pantry'")
    offline_rename = leither(tmp_path, "rename", "attic", "loft")
    assert offline_rename.returncode == 0 and "inventory only" in offline_rename.stderr


def test_db_methods_listed_and_any_case(tmp_path: Path) -> None:
    from leither.api import DB_READ, DB_WRITE

    assert set(dbverb.METHODS) == set(DB_READ + DB_WRITE)  # every method the node serves
    assert set(DB_WRITE) == dbverb.WRITES
    helptext = leither(tmp_path, "db", "--help").stdout
    for method in ("Hset", "Zrangebyscore", "Lrange", "Begin"):
        assert method in helptext
    assert dbverb.method_name("hgetall") == "Hgetall"
    assert dbverb.convert("zadd", ["s", "10", "a", "7", "b"]) == ["s", 10, "a", 7, "b"]
    assert dbverb.convert("zrange", ["s", "0", "-1", "withscores"]) == ["s", 0, -1, True]
    with pytest.raises(CliError, match=r"usage: Hset KEY FIELD VALUE \[FIELD VALUE ...\] "
                                       r"\(got 1 argument\)"):
        dbverb.convert("hset", ["user"])
    with pytest.raises(CliError, match="did you mean Hget"):
        dbverb.method_name("hgte")
    wrong = leither(tmp_path, "db", "board1", "MID", "Frobnicate", "x")
    assert wrong.returncode == 1 and "no db method 'Frobnicate'" in wrong.stderr
    assert "db --help" in wrong.stderr


def test_completion_scripts(tmp_path: Path) -> None:
    bash = leither(tmp_path, "completion", "bash")
    assert bash.returncode == 0 and "complete" in bash.stdout and "rename" in bash.stdout
    zsh = leither(tmp_path, "completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef leither")
    check = subprocess.run(["bash", "-n"], input=bash.stdout, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_tables_are_plain_when_piped_and_units_human(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    print_table(["name", "free"], [("kitchen", human_bytes(83180556)), ("attic", None)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "free"] and set(lines[1]) == {"-"}
    assert lines[2:] == ["kitchen   79.3 MiB", "attic     -"]
    assert "\x1b[" not in out  # no colour codes when not a terminal
    assert human_duration(7) == "7 s" and human_duration(7300) == "2 h 1 min"


def test_replaced_fact_read_defensively() -> None:
    from leither_host.facts import replaced_at

    assert replaced_at(None) is None and replaced_at({}) is None and replaced_at(False) is None
    assert replaced_at({"time": 1796190000123, "incarnation": 2, "was": "x"}) == 1796190000123
    assert replaced_at(1796190000) == 1796190000000  # seconds become ms
    assert replaced_at(True) == 0 and replaced_at("yes") == 0  # replaced, date unknown
    assert replaced_at({"why": "restore"}) == 0

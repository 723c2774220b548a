# Every `leither` verb of the node issue through the real entry point (a subprocess running
# `python -m leither_host`) against real simulated MicroPython boards on loopback: output,
# --json shape, exit codes, and the errors a user meets (wrong name, offline node, wrong key,
# missing file).
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from leither_host.sim import Sim


def leither(home: Path, *args: str, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LEITHER_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "leither_host", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Sim]]:
    home = tmp_path_factory.mktemp("home")
    os.environ["LEITHER_HOME"] = str(home)
    sim = Sim()  # the default place under LEITHER_HOME, where `leither claim` looks for tokens
    try:
        # Free loopback ports and names of our own: other simulations on this machine share
        # loopback's mDNS, and a name taken there would be renamed (as on a real LAN).
        sim.up(3, "micropython", use_lan=False, prefix=f"cli{os.getpid() % 10000}b")
        from leither_host.commands.sim import _remember

        _remember(sim)
        # board1 and board2 are claimed here; board3 stays unclaimed for the claim test.
        for board in sim.boards[:2]:
            leither(home, "claim", board.name)
        yield home, sim
    finally:
        for board in sim.boards:  # the nodes' own account, for any failure above
            print(f"--- {board.name} log ---\n{sim.log_tail(board, 40)}")
        sim.down()
        os.environ.pop("LEITHER_HOME", None)


def test_claim_status_and_errors(fleet: tuple[Path, Sim]) -> None:

    home, sim = fleet
    owned, fresh = sim.boards[0], sim.boards[2]
    # Before the claim a guest sees public facts only.
    out = json.loads(leither(home, "status", fresh.name, "--json").stdout)
    assert out["claimed"] is False and out["role"] == "guest"
    bad = leither(home, "claim", fresh.name, "--token", "0000000000000000", check=False)
    assert bad.returncode == 1 and "wrong claim token" in bad.stderr
    # The node makes claims wait a second after a wrong token (anti-guessing): the CLI waits
    # out "busy" instead of failing. By address, a wrong --id is refused before any token goes.
    wrong_id = leither(stranger_home(home), "claim", f"{fresh.ip}:{fresh.port}", "--id",
                       "2NDmpWDZFi9kTcJfQu1hLXikKVgc", "--token", fresh.claim_token,
                       check=False)
    assert wrong_id.returncode == 1 and "authentication" in wrong_id.stderr
    out = json.loads(leither(home, "claim", fresh.name, "--json").stdout)
    assert out["role"] == "owner" and out["node"] != out["owner"]
    again = leither(home, "claim", fresh.name, "--token", fresh.claim_token, check=False)
    assert again.returncode == 1 and "already has an owner" in again.stderr
    status = json.loads(leither(home, "status", owned.name, fresh.name, "--json").stdout)
    assert [s["name"] for s in status] == [owned.name, fresh.name]
    assert {"id", "board", "fw", "uptime_s", "free_bytes", "heap_bytes", "role"} <= set(status[0])
    assert status[1]["role"] == "owner" and status[1]["board"] == "unix"
    assert status[1]["id"] == out["node"]
    by_prefix = json.loads(leither(home, "status", status[1]["id"][:8], "--json").stdout)
    assert by_prefix["name"] == fresh.name
    text = leither(home, "status", fresh.name).stdout
    assert "owner" in text and status[1]["id"] in text
    facts = dict(line.split(None, 1) if " " in line else (line, "")
                 for line in text.replace("free storage", "free_storage")
                 .replace("free heap", "free_heap").splitlines())
    assert facts["uptime"].endswith((" s", " min")) and facts["free_storage"].endswith("iB")
    assert facts["free_heap"].endswith("iB") and facts["pairing"].strip() == "idle"
    assert "False" not in text and "True" not in text  # no raw pair flags beside pair_state
    wrong = leither(home, "status", "no-such-board", check=False)
    assert wrong.returncode == 1 and wrong.stderr.startswith("leither: no node named")


def stranger_home(home: Path) -> Path:
    """Another host's home (its own key and inventory) beside the test's."""
    return home.parent / (home.name + "-stranger")


def test_mm_file_round_trip(fleet: tuple[Path, Sim], tmp_path: Path) -> None:
    home, sim = fleet
    name = sim.boards[0].name
    mid = leither(home, "mm", "create", name, "--app", "cli", "--ext", "bin").stdout.strip()
    assert 26 <= len(mid) <= 28
    same = json.loads(leither(home, "mm", "create", name, "--app", "cli", "--ext", "bin",
                              "--json").stdout)
    assert same["mid"] == mid  # same author, app, ext and mark: same ID
    data = os.urandom(20000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    put = json.loads(leither(home, "mm", "put", name, mid, str(src), "--json").stdout)
    assert put["written"] == len(data) and put["size"] == len(data)
    leither(home, "mm", "backup", name, mid)
    src.write_bytes(data[:5000])
    leither(home, "mm", "put", name, mid, str(src))
    backup = json.loads(leither(home, "mm", "backup", name, mid, "--json").stdout)
    assert backup["n"] == 2 and backup["size"] == 5000
    versions = json.loads(leither(home, "mm", "versions", name, mid, "--json").stdout)
    assert [v["n"] for v in versions] == [1, 2]
    out = tmp_path / "out.bin"
    leither(home, "mm", "get", name, mid, "--version", "1", "-o", str(out))
    assert out.read_bytes() == data
    leither(home, "mm", "release", name, mid, "1")
    listing = json.loads(leither(home, "mm", "ls", name, "--json").stdout)
    entry = [m for m in listing if m["mid"] == mid][0]
    assert entry["release"] == 1 and entry["last"] == 2 and entry["versions"] == 2
    restored = json.loads(leither(home, "mm", "restore", name, mid, "1", "--json").stdout)
    assert restored["size"] == len(data)
    leither(home, "mm", "get", name, mid, "-o", str(out))
    assert out.read_bytes() == data
    gone = json.loads(leither(home, "mm", "rm-versions", name, mid, "2", "--json").stdout)
    assert gone["deleted"] == 1
    assert [v["n"] for v in json.loads(leither(home, "mm", "versions", name, mid,
                                               "--json").stdout)] == [1]
    other = leither(home, "mm", "create", name, "--app", "cli", "--ext", "ref").stdout.strip()
    ref = json.loads(leither(home, "mm", "ref", name, mid, "add", other, "--json").stdout)
    assert ref["count"] == 1
    refs = json.loads(leither(home, "mm", "ref", name, mid, "ls", "--json").stdout)
    assert refs == {other: 1}
    missing = leither(home, "mm", "put", name, mid, str(tmp_path / "nope.bin"), check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    bad_mid = leither(home, "mm", "versions", name, "1111111111111111111111111111",
                      check=False)
    assert bad_mid.returncode == 1 and "bad MiMei id" in bad_mid.stderr
    # Asking for a db MiMei where a file MiMei has that app/ext is an error, not the file.
    clash = leither(home, "mm", "create", name, "--app", "cli", "--ext", "bin", "--type", "db",
                    check=False)
    assert clash.returncode == 1 and "a file MiMei with app 'cli'" in clash.stderr
    assert mid in clash.stderr
    for args, why in ((["--app", ""], "--app must not be empty"),
                      (["--app", "x", "--ext", "a/b"], "'/' not allowed"),
                      (["--app", "a" * 300], "--app is 300 characters; at most 64")):
        bad = leither(home, "mm", "create", name, *args, check=False)
        assert bad.returncode == 1 and why in bad.stderr, bad.stderr
    nowhere = leither(home, "mm", "get", name, mid, "-o", str(tmp_path / "missing" / "x"),
                      check=False)
    assert nowhere.returncode == 1 and "no directory" in nowhere.stderr
    assert not (tmp_path / "missing").exists()
    listing = json.loads(leither(home, "mm", "ls", name, "--json").stdout)
    assert all("mid" in m and "id" not in m for m in listing)  # `mid` in every verb


def test_db_verb(fleet: tuple[Path, Sim]) -> None:
    home, sim = fleet
    name = sim.boards[1].name
    dbid = leither(home, "mm", "create", name, "--app", "cli", "--type", "db").stdout.strip()
    assert leither(home, "db", name, dbid, "Set", "greeting", "hello").returncode == 0
    assert leither(home, "db", name, dbid, "Get", "greeting").stdout.strip() == "hello"
    assert json.loads(leither(home, "db", name, dbid, "Zadd", "s", "10", "a", "7", "b",
                              "--json").stdout) == 2
    assert json.loads(leither(home, "db", name, dbid, "Zrange", "s", "0", "-1",
                              "--json").stdout) == ["b", "a"]
    text = leither(home, "db", name, dbid, "Zrange", "s", "0", "-1").stdout
    assert text.splitlines() == ["1) b", "2) a"]
    bad = leither(home, "db", name, dbid, "Zadd", "s", "ten", "c", check=False)
    assert bad.returncode == 1 and "must be an integer" in bad.stderr
    wrongtype = leither(home, "db", name, dbid, "Hget", "greeting", "x", check=False)
    assert wrongtype.returncode == 1 and "WRONGTYPE" in wrongtype.stderr
    assert leither(home, "db", name, dbid, "get", "greeting").stdout.strip() == "hello"
    short = leither(home, "db", name, dbid, "hset", "user", check=False)
    assert short.returncode == 1
    assert "usage: Hset KEY FIELD VALUE [FIELD VALUE ...] (got 1 argument)" in short.stderr


def test_wrong_key_and_offline(fleet: tuple[Path, Sim], tmp_path: Path) -> None:
    home, sim = fleet
    name = sim.boards[0].name
    # Another host (its own key) reaches the node by address but is a guest there.
    stranger = tmp_path / "stranger"
    b1 = sim.boards[0]
    guest = json.loads(leither(stranger, "status", f"{b1.ip}:{b1.port}", "--json").stdout)
    assert guest["role"] == "guest"
    denied = leither(stranger, "mm", "ls", f"{b1.ip}:{b1.port}", check=False)
    assert denied.returncode == 1 and "not allowed" in denied.stderr
    # A node answering with another key than the one pinned in the inventory is refused.
    fleet_file = home / "data" / "fleet.json"
    saved = fleet_file.read_text()
    try:
        inventory = json.loads(saved)
        for node in inventory["nodes"].values():
            if node.get("name") == name:
                node["id"] = "2NDmpWDZFi9kTcJfQu1hLXikKVgc"  # some other node's ID
        fleet_file.write_text(json.dumps(inventory))
        imposter = leither(home, "status", name, check=False)
        assert imposter.returncode == 1 and "authentication" in imposter.stderr
    finally:
        fleet_file.write_text(saved)
    sim.kill(sim.boards[1].name)
    try:
        # A dead node's status is a status: offline, last seen when; not an error.
        offline = leither(home, "status", sim.boards[1].name, check=False, timeout=60)
        assert offline.returncode == 0, offline.stderr
        assert "offline, last seen" in offline.stdout and "ago" in offline.stdout
        as_json = json.loads(leither(home, "status", sim.boards[1].name, "--json").stdout)
        assert as_json["online"] is False and as_json["last_seen"] > 0
    finally:
        sim.start(sim.boards[1].name)
    assert json.loads(leither(home, "status", sim.boards[1].name,
                              "--json").stdout)["role"] == "owner"


def test_sim_and_build_verbs(fleet: tuple[Path, Sim]) -> None:
    home, sim = fleet
    rows = json.loads(leither(home, "sim", "ls", "--json").stdout)
    assert [r["name"] for r in rows] == [b.name for b in sim.boards]
    assert all(r["running"] for r in rows)
    out = leither(home, "sim", "press", rows[0]["name"]).stdout
    assert "pressed" in out
    built = json.loads(leither(home, "build", "--board", "esp32", "--no-standin",
                               "--json").stdout)
    assert built["board"] == "esp32" and built["bytes"] > 10000
    assert not any("port/unix" in f["path"] for f in built["files"])
    bad = leither(home, "build", "--board", "nosuch", check=False)
    assert bad.returncode == 1 and "unknown board" in bad.stderr

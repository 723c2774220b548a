"""Paired backup end to end on a simulated LAN of real MicroPython boards (root: namespaces).

One story, in order, on three boards: board1 and board2 are claimed (the host escrows their
identity and backup key) and paired by their buttons; board3 is claimed and left fresh.

* 5 MB across several MiMei (files with two versions, a db) is backed up from board1 to board2;
  halfway through, the bridge drops every packet until board1 notices, then the link comes back:
  the push resumes and completes, and board2 never receives a block it already had.
* Nothing board2 stores contains a 4 KiB chunk of board1's data in the clear.
* board1 dies: `leither mm get board1 MID --version N` reads every backed-up version through
  board2 (so every block is there), opened by the host with the escrowed key.
* `leither restore board1 --onto board3`: board3 becomes board1, every MiMei and version
  byte-identical, and board2 takes new backups from it as its partner.
* 5% packet loss: a new version is backed up, audited and read back from board2.
* A key that is not board2's partner (nor board1's owner) cannot push, audit or read.
* The old board1 comes back with a version of its own: board2 refuses it (the restore advanced
  the node's incarnation), board1 says "replaced" (GetVar, LED, every other call) and the
  history on board2 stays board3's.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leither_host import lan as lanlib
from leither_host.sim import Sim

REPO = Path(__file__).resolve().parents[2]
CHUNK = 4096

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(os.geteuid() == 0 and lanlib.available() is not None,
                       reason=f"simulated LAN: {lanlib.available()}"),
]


def cli(sim: Sim, *args: str, check: bool = True, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    """The real `leither` entry point, run on the LAN's CLI host."""
    argv = sim.cli_argv([sys.executable, "-m", "leither_host", *args])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=os.environ,
                          check=False)
    if check:
        assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


def cli_json(sim: Sim, *args: str, timeout: float = 120) -> Any:
    return json.loads(cli(sim, *args, "--json", timeout=timeout).stdout)


def log_of(sim: Sim, name: str) -> str:
    return (Path(sim.board(name).root) / "node.log").read_text(errors="replace")


def wait_for(what: str, predicate: Any, timeout: float, step: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def seed_store(root: Path, data: dict[str, list[bytes]]) -> dict[str, str]:
    """Write MiMei straight into a stopped board's store (its own on-disk format, fast from
    CPython); returns {label: mid}. Each list entry becomes one version."""
    sys.path.insert(0, str(REPO / "firmware"))
    from leither import identity, mimei

    st = mimei.Store(str(root / "store"), identity.load_identity(str(root)))
    mids = {}
    try:
        for label, versions in data.items():
            mid = st.create("backup-test", label)
            for content in versions:
                st.truncate(mid, 0)
                for off in range(0, len(content), 65536):
                    st.set_data(mid, off, content[off:off + 65536])
                st.backup(mid)
            mids[label] = mid
        dbid = st.create("backup-test", "db", type="db")
        db = st.db(dbid)
        for i in range(50):
            db.call("Hset", ["h", f"k{i}", f"value {i}"])
        db.call("Zadd", ["z", 1, "a", 2, "b"])
        st.backup(dbid)
        db.call("Sadd", ["s", "x", "y"])
        st.backup(dbid)
        mids["db"] = dbid
    finally:
        st.close()
    return mids


# The unix MicroPython port loads all .mpy code into its heap (a real board freezes it): node,
# pairing, backup and the db engine take ~350 KB, so the sim's 512K default leaves too little
# for bulk transfers. 1M per board here; see the report.
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("home")
    os.environ["LEITHER_HOME"] = str(home)
    sim: Sim | None = None
    try:
        (REPO / "build").mkdir(exist_ok=True)
        with open(REPO / "build" / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the .mpy build is shared with parallel tests
            proc = subprocess.run([sys.executable, "-m", "leither_host", "sim", "up", "3",
                                   "--lan", "--heap", "1M"], capture_output=True, text=True,
                                  timeout=120, env=os.environ, check=False)
        assert proc.returncode == 0, proc.stderr
        sim = Sim()
        for b in sim.boards:
            out = cli(sim, "claim", b.name).stdout
            assert "escrowed" in out, out
        yield {"home": home, "sim": sim}
    finally:
        if sim is not None:
            sim = Sim()  # reload: `leither restore` restarted a board behind this object
            for board in sim.boards:
                print(f"--- {board.name} log ---\n{sim.log_tail(board, 30)}")
            sim.down()
        os.environ.pop("LEITHER_HOME", None)


def test_backup_resumes_after_a_cut_and_holds_no_plaintext(world: dict[str, Any]) -> None:
    sim: Sim = world["sim"]
    b1, b2 = sim.board("board1"), sim.board("board2")
    # Pair board1 and board2 by their buttons.
    sim.press("board1")
    time.sleep(0.3)
    sim.press("board2")
    wait_for("pairing", lambda: "paired with" in log_of(sim, "board1")
             and "paired with" in log_of(sim, "board2"), 30)
    # 5 MB of fresh data on board1, written offline, then board1 boots and pushes it.
    sim.stop("board1")
    big = os.urandom(2 * 1024 * 1024)
    changed = bytearray(big)
    changed[700000:800000] = os.urandom(100000)
    data = {"a": [big, bytes(changed)], "b": [os.urandom(1536 * 1024)],
            "c": [os.urandom(1300 * 1024 + 123)]}
    mids = seed_store(Path(b1.root), data)
    world.update(data=data, mids=mids)
    # 4 Mbit/s: the 5 MB push takes ~11 s, so the cut surely lands in the middle of it (an
    # unshaped push took 2.5 s and once finished before a loaded machine applied the cut).
    sim.link(rate="4mbit")
    try:
        sim.start("board1")
        node1 = cli_json(sim, "status", "board1")["id"]
        world["node1"] = node1
        vault = Path(b2.root) / "vault" / node1 / "blocks"
        wait_for("a third of the push", lambda: dir_bytes(vault) > 1_800_000, 60, 0.05)
        dups_before = cli_json(sim, "backup", "status", "board2")["held_for_partner"][node1][
            "stats"]["dups"]
        sim.link(loss=100)  # cut: the bridge drops everything
        try:
            cut_log = len(log_of(sim, "board1"))
            wait_for("board1 to notice the cut",
                     lambda: "push failed" in log_of(sim, "board1")[cut_log:], 30, 0.2)
        finally:
            sim.link(loss=0)
        wait_for("the push to resume",
                 lambda: "resuming" in log_of(sim, "board1")[cut_log:], 30)

        def done() -> Any:
            st = cli_json(sim, "backup", "status", "board1")
            mm = st["mimei"]
            return st if mm and st["state"] != "pushing" and all(
                m["partner_n"] == m["last_n"] for m in mm.values()) else None

        st = wait_for("the push to complete", done, 90, 1.0)
    finally:
        sim.link(rate="off")
    assert st["state"] in ("idle", "pending") and st["pending"] == 0
    assert set(st["mimei"]) == set(mids.values())
    held = cli_json(sim, "backup", "status", "board2")["held_for_partner"][node1]
    # The cut resent at most one batch per transfer in flight (two MiMei go at once; a board's
    # 8 KiB frames carry one sealed chunk each) - in fact none: what arrived is asked about.
    assert held["stats"]["dups"] - dups_before <= 2, (dups_before, held)
    assert held["bytes"] > 5_000_000
    # No 4 KiB chunk of board1's data in the clear anywhere under board2's root: 8-byte probes
    # every 512 bytes of each chunk; any copy of a chunk, at any offset, contains one.
    probes = set()
    for versions in data.values():
        for content in versions:
            for off in range(0, len(content) - CHUNK + 1, CHUNK):
                for p in range(0, CHUNK, 512):
                    probes.add(content[off + p:off + p + 8])
    scanned = 0
    for path in Path(b2.root).rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            scanned += len(blob)
            view = memoryview(blob)
            hit = next((i for i in range(len(blob) - 7) if view[i:i + 8] in probes), None)
            assert hit is None, f"plaintext of board1 in {path} at {hit}"
    assert scanned > 5_000_000


def test_failover_reads_every_version_through_the_partner(world: dict[str, Any],
                                                          tmp_path: Path) -> None:
    sim: Sim = world["sim"]
    sim.kill("board1")
    for label, versions in world["data"].items():
        mid = world["mids"][label]
        for n, content in enumerate(versions, 1):
            out = tmp_path / f"{label}{n}"
            proc = cli(sim, "mm", "get", "board1", mid, "--version", str(n), "-o", str(out))
            assert "offline" in proc.stderr and "partner" in proc.stderr
            assert out.read_bytes() == content, f"{label} v{n}"
    last = tmp_path / "last"
    cli(sim, "mm", "get", "board1", world["mids"]["a"], "--version", "last", "-o", str(last))
    assert last.read_bytes() == world["data"]["a"][-1]
    listed = cli_json(sim, "mm", "ls", "board1")
    assert {m["mid"] for m in listed} == set(world["mids"].values())
    cur = cli(sim, "mm", "get", "board1", world["mids"]["a"], check=False)
    assert cur.returncode == 1 and "cur is never backed up" in cur.stderr


def test_restore_onto_a_fresh_board(world: dict[str, Any], tmp_path: Path) -> None:
    sim: Sim = world["sim"]
    world["restored_ms"] = int(time.time() * 1000)
    result = cli_json(sim, "restore", "board1", "--onto", "board3", timeout=300)
    assert result["incarnation"] == 1  # the restore moved the fence (leither.fence)
    assert result["id"] == world["node1"] and result["versions"] == 6
    node1 = world["node1"]  # board3 now runs as board1's node (by ID: its name stays board3)
    assert cli_json(sim, "status", node1)["id"] == node1
    for label, versions in world["data"].items():
        mid = world["mids"][label]
        vers = cli_json(sim, "mm", "versions", node1, mid)
        assert [v["n"] for v in vers] == list(range(1, len(versions) + 1))
        for n, content in enumerate(versions, 1):
            out = tmp_path / f"{label}{n}"
            cli(sim, "mm", "get", node1, mid, "--version", str(n), "-o", str(out))
            assert out.read_bytes() == content, f"{label} v{n}"
        cli(sim, "mm", "get", node1, mid, "-o", str(tmp_path / "cur"))
        assert (tmp_path / "cur").read_bytes() == versions[-1]  # cur is the last version
    dbid = world["mids"]["db"]
    assert cli(sim, "db", node1, dbid, "Hget", "h", "k7").stdout.strip() == "value 7"
    assert "x" in cli(sim, "db", node1, dbid, "Smembers", "s").stdout
    info = cli_json(sim, "mm", "ls", node1)
    assert {m["mid"] for m in info} == set(world["mids"].values())
    assert {m["app"] for m in info} == {"backup-test"}


def test_backup_under_packet_loss_then_strangers_refused(world: dict[str, Any],
                                                        tmp_path: Path) -> None:
    sim: Sim = world["sim"]
    node1 = world["node1"]
    mid = world["mids"]["c"]
    content = os.urandom(384 * 1024)
    src = tmp_path / "new.bin"
    src.write_bytes(content)
    sim.link(loss=5)
    try:
        cli(sim, "mm", "put", node1, mid, str(src), timeout=180)
        cli(sim, "mm", "backup", node1, mid, timeout=180)
        st = cli_json(sim, "backup", "now", node1, "--timeout", "120", timeout=180)
        assert st["mimei"][mid]["partner_n"] == 2 and st["pending"] == 0
        assert st["partner"] == cli_json(sim, "status", "board2")["id"]
    finally:
        sim.link(loss=0)
    audit = cli_json(sim, "backup", "audit", node1, "--count", "6")
    assert audit["results"] and all(r["ok"] for r in audit["results"])
    # Proof of service: board1 signs a receipt for board2 (checked by `backup receipts`).
    receipts = cli_json(sim, "backup", "receipts", node1, "--cut")
    assert receipts and receipts[-1]["issuer"] == node1
    assert receipts[-1]["partner"] == cli_json(sim, "status", "board2")["id"]
    assert receipts[-1]["audits_ok"] >= 6 and receipts[-1]["audits_failed"] == 0
    assert receipts[-1]["served"] > 5_000_000  # the restore pulled the backup back
    # Read the new version back from the partner alone, opened with the escrowed key.
    script = textwrap.dedent(f"""
        import sys
        from leither_host import escrow
        from leither_host.nodes import open_node
        s, _ = open_node("board2", failover=False)
        r = escrow.BackupReader(s, escrow.find("{world['node1']}"))
        sys.stdout.buffer.write(r.read("{mid}", 2, 0, 1 << 20))
    """)
    proc = subprocess.run(sim.cli_argv([sys.executable, "-c", script]), capture_output=True,
                          timeout=60, env=os.environ, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == content
    # A stranger's key: no push, no audit, no read of what board2 holds for board1.
    script = textwrap.dedent(f"""
        import json
        from leither import crypto
        from leither.errors import RPCError
        from leither_host.client import connect_sync
        from leither_host.fleet import Fleet
        rec = Fleet().resolve("board2")
        s = connect_sync(rec["host"], rec["port"], crypto.random(32), expected_node_id=rec["id"])
        codes = {{}}
        for method, params in (
                ("BKHello", {{"owner": bytes(32), "check": bytes(32)}}),
                ("BKPut", {{"blocks": [[bytes(32), bytes(64)]]}}),
                ("BKHave", {{"names": [bytes(32)]}}),
                ("BKAudit", {{"name": bytes(32), "nonce": bytes(16)}}),
                ("BKList", {{"node": "{world['node1']}"}}),
                ("BKGet", {{"node": "{world['node1']}", "names": [bytes(32)]}}),
                ("BKCommit", {{"entries": []}})):
            try:
                s.call(method, params)
                codes[method] = "ok"
            except RPCError as err:
                codes[method] = err.code
        print(json.dumps(codes))
    """)
    proc2 = subprocess.run(sim.cli_argv([sys.executable, "-c", script]), capture_output=True,
                           text=True, timeout=60, env=os.environ, check=False)
    assert proc2.returncode == 0, proc2.stderr
    codes = json.loads(proc2.stdout)
    assert set(codes.values()) == {"forbidden"}, codes
    assert re.search(r"held_for_partner", cli(sim, "backup", "status", "board2", "--json").stdout)


def test_deleted_versions_leave_the_partner(world: dict[str, Any]) -> None:
    sim: Sim = world["sim"]
    node1 = world["node1"]
    mid = world["mids"]["a"]

    def held() -> dict[str, Any]:
        return cli_json(sim, "backup", "status", "board2")["held_for_partner"][node1]

    before = held()
    cli(sim, "mm", "rm-versions", node1, mid, "1")
    cli_json(sim, "backup", "now", node1, "--timeout", "60", timeout=90)
    # The next pass prunes: board2 drops the catalog entry of the deleted version.
    after = wait_for("board2 to drop the deleted version",
                     lambda: (lambda h: h if h["entries"] == before["entries"] - 1 else None)(
                         held()), 30, 0.5)
    assert after["bytes"] <= before["bytes"]
    assert "pruned" in log_of(sim, "board3")  # board3 runs as node1 since the restore
    # Through the partner alone, opened with the escrowed key: version 2 reads back whole,
    # version 1 is gone.
    script = textwrap.dedent(f"""
        import sys
        from leither_host import escrow
        from leither_host.nodes import open_node
        s, _ = open_node("board2", failover=False)
        r = escrow.BackupReader(s, escrow.find("{node1}"))
        sys.stdout.buffer.write(r.read("{mid}", 2, 0, 4 << 20))
        try:
            r.read("{mid}", 1, 0, 10)
        except Exception as err:
            sys.stderr.write("v1: %s" % err)
    """)
    proc = subprocess.run(sim.cli_argv([sys.executable, "-c", script]), capture_output=True,
                          timeout=60, env=os.environ, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == world["data"]["a"][1]
    assert b"v1: " in proc.stderr, proc.stderr


def test_the_replaced_board_cannot_write_into_the_history(world: dict[str, Any]) -> None:
    """board1, replaced by the restore onto board3, comes back with a version of its own: the
    partner refuses it (older incarnation), board1 says it was replaced and serves no more."""
    sim: Sim = world["sim"]
    node1 = world["node1"]
    b1 = sim.board("board1")
    mid = world["mids"]["b"]
    sys.path.insert(0, str(REPO / "firmware"))
    from leither import identity, mimei

    st = mimei.Store(str(Path(b1.root) / "store"), identity.load_identity(b1.root))
    try:  # a version only the old board has, written while it was off
        st.set_data(mid, 0, b"written on the old board after the restore")
        st.backup(mid)
    finally:
        st.close()

    def held() -> dict[str, Any]:
        return cli_json(sim, "backup", "status", "board2")["held_for_partner"][node1]

    before = held()
    since = len(log_of(sim, "board1"))
    started_ms = int(time.time() * 1000)
    sim.start("board1")
    wait_for("board1 to learn it was replaced",
             lambda: "serving no more" in log_of(sim, "board1")[since:], 30, 0.2)
    assert sim.led("board1") == "error"
    # What board1 says about itself, to anyone (a guest key here): replaced, since when.
    script = textwrap.dedent(f"""
        import json
        from leither import crypto
        from leither.errors import RPCError
        from leither_host.client import connect_sync
        s = connect_sync("{b1.ip}", {b1.port}, crypto.random(32), expected_node_id="{node1}")
        out = {{"replaced": s.call("GetVar", {{"name": "replaced"}})}}
        try:
            s.call("Ping", {{}})
            out["ping"] = "ok"
        except RPCError as err:
            out["ping"] = [err.code, err.msg]
        print(json.dumps(out))
    """)
    proc = subprocess.run(sim.cli_argv([sys.executable, "-c", script]), capture_output=True,
                          text=True, timeout=60, env=os.environ, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rep = out["replaced"]
    assert rep["incarnation"] == 1 and rep["was"] == 0
    assert world.get("restored_ms", 0) <= rep["time"] <= started_ms, rep
    assert out["ping"][0] == "replaced" and "replaced by a restore on" in out["ping"][1]
    # The partner kept one history: nothing of board1's arrived.
    after = held()
    assert after["entries"] == before["entries"] and after["bytes"] == before["bytes"]
    script = textwrap.dedent(f"""
        import sys
        from leither_host import escrow
        from leither_host.nodes import open_node
        s, _ = open_node("board2", failover=False)
        r = escrow.BackupReader(s, escrow.find("{node1}"))
        sys.stdout.buffer.write(r.read("{mid}", 1, 0, 4 << 20))
        try:
            r.read("{mid}", 2, 0, 10)
        except Exception as err:
            sys.stderr.write("v2: %s" % err)
    """)
    proc = subprocess.run(sim.cli_argv([sys.executable, "-c", script]), capture_output=True,
                          timeout=60, env=os.environ, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == world["data"]["b"][0]
    assert b"v2: " in proc.stderr, proc.stderr

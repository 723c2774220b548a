# `leither demo`: the story on simulated boards, told through the real `leither` command so
# that every step is what a user would type. As root the boards get a LAN of their own
# (network namespaces); otherwise they share loopback.
"""The demo behind `leither demo` and `make demo`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from leither_host import lan as lanmod
from leither_host.errors import CliError
from leither_host.sim import Sim

# Boards: "esp32" is the 32-bit stand-in with the firmware frozen in, at the heap in
# boards/esp32/board.json (what a real ESP32-WROOM gives), so the story shows what fits the
# board; where the stand-in cannot be built (no MicroPython source or gcc-multilib) the demo
# says so and uses unix boards. Those run the registry's 64-bit MicroPython, which loads every
# .mpy module into its heap (node, pairing, backup and the db engine take ~350 KB): 1M each.
DEMO_HEAP = "1M"  # unix boards only


class Story:
    """Runs `leither` commands where the CLI host lives and prints them like a terminal."""

    def __init__(self, home: Path, sim: Sim, out: Callable[[str], None] = print) -> None:
        self.home = home
        self.sim = sim
        self.out = out
        self.env = dict(os.environ, LEITHER_HOME=str(home))

    def say(self, text: str) -> None:
        self.out(f"\n## {text}")

    def leither(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        argv = [sys.executable, "-m", "leither_host", *args]
        self.out("$ leither " + " ".join(shlex.quote(a) for a in args))
        if args[0] != "sim":
            # Everything but `sim` runs where the CLI host lives. `sim` drives the simulation
            # from the machine itself: run inside the CLI's namespace, `sim down` would delete
            # the namespace it runs in and lift the LAN's guard route in the wrong namespace.
            argv = self.sim.cli_argv(argv)
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CliError(f"demo step timed out after {timeout:.0f} s: leither "
                           f"{' '.join(args)}") from None
        text = proc.stdout.rstrip()
        if text:
            self.out(text)
        if proc.stderr.strip():
            self.out(proc.stderr.rstrip())
        if check and proc.returncode != 0:
            raise CliError(f"demo step failed: leither {' '.join(args)} (exit {proc.returncode})")
        return proc.stdout


def wait_log(sim: Sim, name: str, text: str, timeout: float = 30.0) -> str:
    """The first line of a board's log containing text (waiting for it)."""
    deadline = time.monotonic() + timeout
    log = Path(sim.board(name).root) / "node.log"
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if text in line:
                return line
        time.sleep(0.2)
    raise CliError(f"demo: {name} never logged {text!r}:\n{sim.log_tail(sim.board(name))}")


# The board `leither demo` runs on by default: ESP32 boards at the board's real heap (the
# 32-bit stand-in at 111,936 bytes), the product's target; unix MicroPython boards where the
# stand-in cannot be built here (pick_board says so), or with --board unix.
DEFAULT_BOARD = "esp32"


def pick_board(board: str | None, interpreter: str, out: Callable[[str], None]) -> str:
    """The board kind asked for (default DEFAULT_BOARD); esp32 falls back to unix, saying why,
    where its stand-in cannot be built; CPython boards are unix boards."""
    if interpreter == "cpython":
        return "unix"
    board = board or DEFAULT_BOARD
    if board != "esp32":
        return board
    from leither_host import standin

    try:
        standin.build_standin("esp32")
    except standin.Unavailable as err:
        out(f"(no ESP32 stand-in here: {err}; the story runs on unix boards)")
        return "unix"
    return "esp32"


def run_demo(boards: int = 3, interpreter: str = "micropython", use_lan: bool | None = None,
             keep: bool = False, out: Callable[[str], None] = print,
             board: str | None = None) -> None:
    if use_lan is None:
        use_lan = lanmod.available() is None
    kind = pick_board(board, interpreter, out)
    home = Path(tempfile.mkdtemp(prefix="leither-demo-"))
    os.environ["LEITHER_HOME"] = str(home)  # the sim remembers boards in this home's fleet
    sim = Sim(home / "data" / "sim")
    story = Story(home, sim, out)
    started = time.monotonic()
    try:
        where = "each in its own network namespace on a bridge" if use_lan else "on loopback"
        if kind == "esp32":
            from leither_host.build import board_config

            heap = board_config("esp32")["heap_bytes"]
            story.say(f"Start {boards} simulated ESP32 boards (MicroPython, 32-bit, firmware "
                      f"frozen in, {heap}-byte heap as on an ESP32-WROOM; {where})")
            size = ["--board", "esp32"]
        else:
            story.say(f"Start {boards} simulated boards ({interpreter}, {where})")
            size = ["--heap", DEMO_HEAP]
        story.leither("sim", "--dir", str(sim.base), "up", str(boards), *size,
                      *(["--lan"] if use_lan else []),
                      *(["--cpython"] if interpreter == "cpython" else []))
        sim = Sim(sim.base)  # reload the state the sim command wrote
        story.sim = sim
        names = [b.name for b in sim.boards]

        story.say("Discover them on the network (mDNS, _leither._tcp)")
        story.leither("discover", "--timeout", "3")

        story.say("Claim each board with its one-time token (printed at first boot)")
        for b in sim.boards:
            story.leither("claim", b.name, "--token", b.claim_token)
        story.leither("status", names[0])

        story.say("Write a file MiMei and back it up")
        mid = story.leither("mm", "create", names[0], "--app", "demo", "--ext", "txt").strip()
        note = home / "note.txt"
        note.write_text("Leither on a board: version one.\n" * 100)
        story.leither("mm", "put", names[0], mid, str(note))
        story.leither("mm", "backup", names[0], mid)
        note.write_text("Leither on a board: version two, longer.\n" * 200)
        story.leither("mm", "put", names[0], mid, str(note))
        story.leither("mm", "backup", names[0], mid)
        story.leither("mm", "versions", names[0], mid)
        story.leither("mm", "release", names[0], mid, "1")
        copy = home / "copy.txt"
        story.leither("mm", "get", names[0], mid, "--version", "release", "-o", str(copy))
        if copy.read_text() != "Leither on a board: version one.\n" * 100:
            raise CliError("demo: the released version did not read back as written")
        out("(version 1 read back byte-identical)")

        story.say("A db MiMei: Redis-like methods, versioned the same way")
        dbid = story.leither("mm", "create", names[0], "--app", "demo", "--ext", "db",
                             "--type", "db").strip()
        story.leither("db", names[0], dbid, "Hset", "board:1", "name", names[0])
        story.leither("db", names[0], dbid, "Zadd", "uptime", "42", names[0], "7", names[-1])
        story.leither("db", names[0], dbid, "Zrange", "uptime", "0", "-1")
        story.leither("db", names[0], dbid, "Hgetall", "board:1")
        story.leither("mm", "backup", names[0], dbid)
        story.leither("mm", "ls", names[0])
        story.leither("status", *names)
        if len(names) >= 3:
            _backup_story(story, sim, names, mid, dbid, home, out)
    finally:
        story.say("Stop the boards cleanly (goodbye on mDNS) and clean up")
        if keep:
            out(f"(kept: boards still run; state in {home}; `LEITHER_HOME={home} leither sim "
                f"--dir {sim.base} down` stops them)")
        else:
            story.leither("sim", "--dir", str(sim.base), "down", check=False)
            import shutil

            shutil.rmtree(home, ignore_errors=True)
    out(f"\ndemo finished in {time.monotonic() - started:.1f} s")


def _backup_story(story: Story, sim: Sim, names: list[str], mid: str, dbid: str, home: Path,
                  out: Callable[[str], None]) -> None:
    """Pair two boards by their buttons, back one up to the other, lose it, read it through its
    partner, restore it onto the third board, and show the receipts it signed."""
    first, second, fresh = names[0], names[1], names[2]
    _org_setup(story, first, second)
    story.say(f"Pair {first} and {second}: press both buttons within 120 s (like WPS)")
    story.leither("sim", "--dir", str(sim.base), "press", first)
    story.leither("sim", "--dir", str(sim.base), "press", second)
    for name in (first, second):
        out(f"[{name}] " + wait_log(sim, name, "paired with").split("leither: ", 1)[-1])
    out("(both show the same 6-digit code: compare them, as with Bluetooth)")

    story.say(f"{first} backs its versions up to {second}, sealed: {second} cannot read them")
    story.leither("backup", "now", first)
    story.leither("backup", "audit", first, "--count", "4")
    story.leither("backup", "status", second)

    story.say(f"Pull {first}'s plug")
    story.leither("sim", "--dir", str(sim.base), "kill", first)
    story.say(f"Read {first}'s MiMei anyway: the CLI falls back to its partner {second}")
    copy = home / "failover.txt"
    story.leither("mm", "get", first, mid, "--version", "last", "-o", str(copy))
    expect = "Leither on a board: version two, longer.\n" * 200
    if copy.read_text() != expect:
        raise CliError("demo: the version read through the partner is not what was written")
    out("(read back byte-identical through the partner, unsealed here with the escrowed key)")

    story.say(f"Restore {first} onto the fresh board {fresh}, from {second}")
    node_id = json.loads(story.leither("restore", first, "--onto", fresh, "--json",
                                       timeout=600))["id"]
    story.leither("mm", "versions", node_id, mid)
    story.leither("mm", "get", node_id, mid, "--version", "1", "-o", str(copy))
    if copy.read_text() != "Leither on a board: version one.\n" * 100:
        raise CliError("demo: version 1 did not come back byte-identical")
    story.leither("db", node_id, dbid, "Hgetall", "board:1")
    out(f"({fresh} now runs as {node_id}: every version verified; {second} takes its backups "
        f"again)")
    story.leither("mm", "backup", node_id, mid)
    story.leither("backup", "now", node_id)

    story.say(f"Receipts: {node_id[:8]}… signs for what {second} did for it (settlement pays)")
    story.leither("backup", "audit", node_id, "--count", "3")
    story.leither("backup", "receipts", node_id, "--cut")
    _settle_story(story, second, node_id, out)


def _org_setup(story: Story, *nodes: str) -> None:
    """An organization whose members are the nodes (they apply with their own keys, which this
    host holds since it claimed them) and a contract that pays by proof of performance."""
    from leither_host.build import REPO

    story.say("An organization: its members are the boards; its contract pays for proven storage")
    story.leither("org", "create", "demo-coop")
    for node in nodes:
        story.leither("org", "apply", "--org", "demo-coop", "--node", node, "--name", node)
        story.leither("org", "approve", "--org", "demo-coop", _node_id(story, node))
    story.leither("contract", "deploy", "--org", "demo-coop",
                  str(REPO / "examples" / "contracts" / "backup-coop.toml"))


def _node_id(story: Story, name: str) -> str:
    from leither_host import escrow

    held = escrow.find(name)
    if held is None:
        raise CliError(f"demo: no key held for {name}")
    return held.id


def _settle_story(story: Story, partner: str, payer_id: str, out: Callable[[str], None]) -> None:
    """The organization pays the partner for the storage its receipts prove."""
    story.say(f"Settle: the organization pays {partner} for what the receipts prove")
    story.leither("receipts", "collect", "--org", "demo-coop", payer_id)
    story.leither("settle", "--org", "demo-coop", "--income", "1000000", "--income-id",
                  "demo-storage-fees")
    story.leither("ledger", "balance", "--org", "demo-coop")
    partner_id = _node_id(story, partner)
    proof = story.home / f"{partner}.proof"
    story.leither("ledger", "proof", "--org", "demo-coop", partner_id, "--out", str(proof))
    story.leither("ledger", "verify", "--proof", str(proof))
    out(f"({partner}'s balance checks offline against the organization's signed root)")

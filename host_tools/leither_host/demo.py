# `leither demo`: the story on simulated boards, told through the real `leither` command so
# that every step is what a user would type. As root the boards get a LAN of their own
# (network namespaces); otherwise they share loopback.
"""The demo behind `leither demo` and `make demo`."""

from __future__ import annotations

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
        proc = subprocess.run(self.sim.cli_argv(argv), env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        text = proc.stdout.rstrip()
        if text:
            self.out(text)
        if proc.stderr.strip():
            self.out(proc.stderr.rstrip())
        if check and proc.returncode != 0:
            raise CliError(f"demo step failed: leither {' '.join(args)} (exit {proc.returncode})")
        return proc.stdout


def run_demo(boards: int = 2, interpreter: str = "micropython", use_lan: bool | None = None,
             keep: bool = False, out: Callable[[str], None] = print) -> None:
    if use_lan is None:
        use_lan = lanmod.available() is None
    home = Path(tempfile.mkdtemp(prefix="leither-demo-"))
    os.environ["LEITHER_HOME"] = str(home)  # the sim remembers boards in this home's fleet
    sim = Sim(home / "data" / "sim")
    story = Story(home, sim, out)
    started = time.monotonic()
    try:
        story.say(f"Start {boards} simulated boards ({interpreter}, "
                  f"{'each in its own network namespace on a bridge' if use_lan else 'on loopback'})")
        story.leither("sim", "--dir", str(sim.base), "up", str(boards),
                      *(["--lan"] if use_lan else []),
                      *(["--cpython"] if interpreter == "cpython" else []))
        sim.__init__(sim.base)  # reload the state the sim command wrote
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

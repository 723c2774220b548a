# Everything the dashboard changes, it changes by running the `leither` verb itself (with --json)
# as a job: a claim, a pairing window, a backup, an audit, a restore do exactly what they do
# from the shell, and the page shows the command line so a user learns it. A job outlives the
# request that started it; the page polls its state. Each action is a registered builder that
# checks its parameters and makes the argv (never a shell; no value may pose as an option).
"""Write actions as jobs running `leither` verbs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from leither_host.errors import CliError

MAX_JOBS_KEPT = 50  # finished jobs the page can still look up (oldest dropped first)
MAX_RUNNING = 4  # jobs at once: each is a Python process
OUTPUT_LIMIT = 1 << 20  # bytes of a job's stdout kept (a verb's JSON answer is far smaller)
DEFAULT_TIMEOUT_S = 600.0  # a backup or audit of a slow board; restore has its own
RESTORE_TIMEOUT_S = 1800.0  # the restore verb's own RPC timeout
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-\[\]]{0,127}$")  # name, ID prefix or host:port
_MID = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{20,44}$")  # base58 MiMei ID
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}$")  # leither_host.fleet.check_name
_TOKEN = re.compile(r"^[A-Za-z0-9]{4,128}$")

Builder = Callable[[dict[str, Any]], list[str]]
ACTIONS: dict[str, tuple[Builder, float]] = {}
# Actions that rewrite the fleet inventory or the escrow: one at a time, since two `leither`
# processes writing the inventory at once could lose one's update.
INVENTORY_WRITERS: set[str] = set()


def action(name: str, timeout: float = DEFAULT_TIMEOUT_S, writes_inventory: bool = False
           ) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        ACTIONS[name] = (build, timeout)
        if writes_inventory:
            INVENTORY_WRITERS.add(name)
        return build
    return register


def _ref(params: dict[str, Any], key: str = "node") -> str:
    value = params.get(key)
    if not isinstance(value, str) or not _REF.match(value):
        raise CliError(f"{key}: a node name, ID prefix or host:port is needed")
    return value


def _mid(params: dict[str, Any]) -> str:
    value = params.get("mid")
    if not isinstance(value, str) or not _MID.match(value):
        raise CliError("mid: a MiMei ID is needed")
    return value


@action("claim", writes_inventory=True)
def _claim(p: dict[str, Any]) -> list[str]:
    argv = ["claim", _ref(p)]
    token = p.get("claim_token")
    if token:
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise CliError("claim_token: the token the board printed (letters and digits)")
        argv += ["--token", token]
    return argv + ["--json"]


@action("pair")
def _pair(p: dict[str, Any]) -> list[str]:
    return ["pair", _ref(p), "--json"]


@action("unpair")
def _unpair(p: dict[str, Any]) -> list[str]:
    return ["pair", _ref(p), "--unpair", "--json"]


@action("backup_now")
def _backup_now(p: dict[str, Any]) -> list[str]:
    return ["backup", "now", _ref(p), "--json"]


@action("audit", timeout=300)
def _audit(p: dict[str, Any]) -> list[str]:
    count = p.get("count", 4)
    if not isinstance(count, int) or not 1 <= count <= 64:
        raise CliError("count: 1 to 64 blocks")
    return ["backup", "audit", _ref(p), "--count", str(count), "--json"]


@action("cut_receipt")
def _cut(p: dict[str, Any]) -> list[str]:
    return ["backup", "receipts", _ref(p), "--cut", "--json"]


@action("mm_backup")
def _mm_backup(p: dict[str, Any]) -> list[str]:
    return ["mm", "backup", _ref(p), _mid(p), "--json"]


@action("restore", timeout=RESTORE_TIMEOUT_S, writes_inventory=True)
def _restore(p: dict[str, Any]) -> list[str]:
    return ["restore", _ref(p, "dead"), "--onto", _ref(p, "onto"), "--json"]


@action("rename", timeout=60, writes_inventory=True)
def _rename(p: dict[str, Any]) -> list[str]:
    name = p.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise CliError("name: letters, digits, '-' and '_' (not first '-'), at most 63")
    return ["rename", _ref(p), name, "--json"]


@action("forget", timeout=60, writes_inventory=True)
def _forget(p: dict[str, Any]) -> list[str]:
    return ["forget", _ref(p), "--json"]


@action("discover", timeout=60, writes_inventory=True)
def _discover(p: dict[str, Any]) -> list[str]:
    return ["discover", "--json"]


@dataclass
class Job:
    id: int
    action: str
    argv: list[str]
    state: str = "running"  # running, done, failed
    started: float = field(default_factory=time.time)
    ended: float | None = None
    result: Any = None
    error: str | None = None

    def view(self) -> dict[str, Any]:
        shown = list(self.argv)
        for i, arg in enumerate(shown[:-1]):
            if arg == "--token":  # a board's claim token is a secret: not on the page
                shown[i + 1] = "…"
        return {"id": self.id, "action": self.action, "command": "leither " + " ".join(shown),
                "state": self.state, "started": self.started, "ended": self.ended,
                "result": self.result, "error": self.error}


class Jobs:
    """Starts jobs and keeps the last MAX_JOBS_KEPT of them."""

    def __init__(self, on_done: Callable[[Job], None] | None = None,
                 command: list[str] | None = None) -> None:
        self.jobs: OrderedDict[int, Job] = OrderedDict()
        self._next = 1
        self._slots = asyncio.Semaphore(MAX_RUNNING)
        self._inventory = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_done = on_done
        self.command = command or [sys.executable, "-m", "leither_host"]

    def start(self, name: str, params: dict[str, Any]) -> Job:
        if name not in ACTIONS:
            raise CliError(f"no action {name!r} (actions: {', '.join(sorted(ACTIONS))})")
        build, timeout = ACTIONS[name]
        job = Job(self._next, name, build(params))
        self._next += 1
        self.jobs[job.id] = job
        while len(self.jobs) > MAX_JOBS_KEPT:
            oldest = next(iter(self.jobs.values()))
            if oldest.state == "running":
                break
            self.jobs.popitem(last=False)
        task = asyncio.create_task(self._run(job, timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)

    def list(self) -> list[dict[str, Any]]:
        return [j.view() for j in reversed(self.jobs.values())]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self, job: Job, timeout: float) -> None:
        if job.action in INVENTORY_WRITERS:
            async with self._inventory:
                await self._run_process(job, timeout)
        else:
            await self._run_process(job, timeout)

    async def _run_process(self, job: Job, timeout: float) -> None:
        async with self._slots:
            proc = await asyncio.create_subprocess_exec(
                *self.command, *job.argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=dict(os.environ, NO_COLOR="1"))
            try:
                out, err = await asyncio.wait_for(proc.communicate(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                self._finish(job, "failed", None, f"no answer after {timeout:.0f} s")
                return
            except asyncio.CancelledError:
                proc.kill()
                await proc.wait()
                raise
        text = out[:OUTPUT_LIMIT].decode(errors="replace")
        try:
            result: Any = json.loads(text) if text.strip() else None
        except ValueError:
            result = text
        errors = err.decode(errors="replace").strip()
        if proc.returncode == 0:
            self._finish(job, "done", result, errors or None)
        else:
            last = errors.splitlines()[-1] if errors else f"exit status {proc.returncode}"
            self._finish(job, "failed", result,
                         last.removeprefix("leither: ") if last.startswith("leither: ")
                         else last)

    def _finish(self, job: Job, state: str, result: Any, error: str | None) -> None:
        job.state, job.result, job.error, job.ended = state, result, error, time.time()
        if self._on_done is not None:
            self._on_done(job)

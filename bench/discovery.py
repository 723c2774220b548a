"""Discovery latency: node start -> seen by a python-zeroconf ServiceBrowser.

On a simulated LAN (root: network namespaces): a zeroconf browser runs in one namespace; a
node's mDNS (`-m leither.mdns`) is started N times in another, each time under a fresh name.
For every start it records
  * start -> seen: wall time from spawning the process to the browser's "added" event;
  * boot -> announced: the node's own clock from its first line of code to its first
    announcement (includes the 0-250 ms random wait and 3 probes 250 ms apart, RFC 6762 §8.1);
and prints p50 / p95 / min / max. Target (issue 4): start -> seen p50 <= 1.5 s.

    python bench/discovery.py [--runs 20] [--interp esp32|micropython|cpython|all]

esp32 is the 32-bit stand-in with the firmware frozen in (leither_host.standin), at the
ESP32-WROOM's heap; its mDNS runner (leither.mdnsrun, left out of a board's firmware) runs as
a script beside the frozen engine. The heap column bisects the stand-in's smallest heap (the
board's figure) and the 64-bit unix port's (code in the heap) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host_tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from leither_host import lan as lanlib  # noqa: E402

from _mp import build, esp32_heap, micropython, standin  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=f"{REPO / 'firmware'}:{REPO / 'host_tools'}",
           MICROPYPATH=f"{REPO / 'build' / 'unix'}:.frozen")
ENV_ESP32 = dict(ENV, MICROPYPATH=".frozen")  # nothing on disk may shadow the frozen code
RUNNER = REPO / "firmware" / "leither" / "mdnsrun.py"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def node_argv(interp: str, name: str, ip: str) -> list[str]:
    """argv[2] is always the heapsize option on MicroPython (min_heap_kib rewrites it)."""
    if interp == "esp32":
        head = [standin(), "-X", f"heapsize={esp32_heap()}", str(RUNNER)]
    elif interp == "micropython":
        head = [micropython(), "-X", "heapsize=128K", "-m", "leither.mdns"]
    else:
        head = [sys.executable, "-m", "leither.mdns"]
    return head + ["--name", name, "--port", "4800", "--addr", ip,
                   "--txt", "id=bench", "--txt", "v=1", "--txt", "pair=0"]


def env_of(interp: str) -> dict[str, str]:
    return ENV_ESP32 if interp == "esp32" else ENV


def measure(net: lanlib.LAN, interp: str, runs: int) -> dict[str, list[float]]:
    node_host, browser_host = net.hosts
    watch = lanlib.LineReader(net.popen(
        browser_host, [sys.executable, "-m", "leither_host.discovery", "watch",
                       "--timeout", "600"],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=ENV))
    if not watch.wait_line('{"event": "ready"', 10):
        raise SystemExit("zeroconf watcher did not start")
    time.sleep(1.0)  # let the browser's own first queries go out before nodes start
    seen: list[float] = []
    announced: list[float] = []
    misses = 0
    tag = os.urandom(2).hex()
    for i in range(runs):
        name = f"b{tag}-{interp[:2]}-{i}"
        t0 = time.time()
        node = lanlib.LineReader(net.popen(
            node_host, node_argv(interp, name, node_host.ip), stdout=subprocess.PIPE,
            stdin=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_of(interp),
            cwd=str(REPO)))
        line = watch.wait_line(f'{{"event": "added", "instance": "{name}.', 10)
        if line is None:
            misses += 1
        else:
            seen.append(json.loads(line)["wall"] - t0)
        ann = node.wait_line("ANNOUNCED", 5)
        if ann:
            announced.append(int(ann.split()[2]) / 1000)
        node.proc.send_signal(signal.SIGINT)
        try:
            node.proc.wait(5)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
    assert watch.proc.stdin is not None
    watch.proc.stdin.close()
    watch.proc.wait(10)
    return {"seen": seen, "announced": announced, "misses": [float(misses)]}


def min_heap_kib(net: lanlib.LAN, interp: str = "micropython") -> int | None:
    """Smallest -X heapsize (KiB, 2 KiB steps) at which a MicroPython node announces and is
    then resolved by a zeroconf browser (answering its queries) without dying."""
    node_host, browser_host = net.hosts

    def works(kib: int) -> bool:
        name = f"heap{kib}-{os.urandom(2).hex()}"
        argv = node_argv(interp, name, node_host.ip)
        argv[2] = f"heapsize={kib}K"
        node = lanlib.LineReader(net.popen(
            node_host, argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env_of(interp), cwd=str(REPO)))
        try:
            if not node.wait_line("ANNOUNCED", 5):
                return False
            proc = net.run(browser_host, [sys.executable, "-m", "leither_host.discovery",
                                          "browse", "--timeout", "4", "--expect", name],
                           env=ENV, timeout=20)
            return proc.returncode == 0 and node.proc.poll() is None
        finally:
            node.proc.send_signal(signal.SIGINT)
            try:
                node.proc.wait(5)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()

    lo, hi = 4, 128  # KiB: fails at lo (assumed), works at hi (checked)
    if not works(hi):
        return None
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-heap", action="store_true", help="skip the heap bisection")
    parser.add_argument("--interp", choices=["esp32", "micropython", "cpython", "both", "all"],
                        default="all", help="both: micropython and cpython; all: and esp32")
    args = parser.parse_args()
    reason = lanlib.available()
    if reason:
        print(f"discovery bench needs a simulated LAN: {reason}")
        return 0
    build()
    interps = {"both": ["micropython", "cpython"], "all": ["esp32", "micropython", "cpython"]
               }.get(args.interp, [args.interp])
    rows = []
    with lanlib.LAN(hosts=2) as net:
        for interp in interps:
            result = measure(net, interp, args.runs)
            for key, label in (("seen", "start -> seen by zeroconf"),
                               ("announced", "boot -> announced (node clock)")):
                values = result[key]
                if not values:
                    rows.append((interp, label, "-", "-", "-", "-", 0))
                    continue
                rows.append((interp, label, percentile(values, 50), percentile(values, 95),
                             min(values), max(values), len(values)))
            rows.append((interp, "missed (not seen in 10 s)", int(result["misses"][0]),
                         "", "", "", args.runs))
    print(f"{'interpreter':12} {'measure':32} {'p50 s':>7} {'p95 s':>7} {'min s':>7} "
          f"{'max s':>7} {'n':>4}")
    for interp, label, *nums, n in rows:
        cells = [f"{x:7.3f}" if isinstance(x, float) else f"{x!s:>7}" for x in nums]
        print(f"{interp:12} {label:32} {' '.join(cells)} {n:>4}")
    print("target: start -> seen p50 <= 1.5 s (issue 4)")
    if not args.no_heap:
        for interp in [i for i in interps if i != "cpython"]:
            with lanlib.LAN(hosts=2) as net:
                kib = min_heap_kib(net, interp)
            what = ("ESP32 stand-in (32-bit, engine frozen, runner as a script)"
                    if interp == "esp32" else "64-bit unix MicroPython (code in the heap)")
            print(f"{what}: mDNS runner's smallest heap that announces and answers: "
                  f"{kib if kib is not None else '> 128'} KiB (-X heapsize, 2 KiB steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# The mDNS engine from the command line (`-m leither.mdns` or `-m leither.mdnsrun`): announce a
# name until interrupted, or browse a service and print what answered. Host tests and benches
# drive responders this way; a board never runs it, so its bundle leaves this module out
# (boards/esp32/board.json "exclude_modules").
"""Command-line runner for leither.mdns."""

import asyncio

from .compat import ticks_diff, ticks_ms
from .mdns import STOPPED
from .mdnsresp import MDNS, _wait_event

_USAGE = """usage: -m leither.mdns --name NAME --port N [--txt k=v ...] [--addr IP ...]
       [--browse SERVICE --timeout MS] [--run-ms MS]
Announces NAME until interrupted (Ctrl-C / SIGINT says goodbye), or with --browse prints the
instances of SERVICE found within MS as one JSON line and exits. Lines on stdout:
  READY <ms> / ANNOUNCED <name> <ms since start> / RENAMED ... / GOODBYE <name> / BROWSE <json>
Commands on stdin (one a line): `txt k=v ...` updates the TXT record, `quit` stops."""


def _parse_args(argv):
    opts = {"name": None, "port": 4800, "txt": {}, "addr": [], "browse": None,
            "timeout": 3000, "run_ms": 0}
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg in ("-h", "--help"):
            return None
        if value is None:
            raise ValueError("missing value for " + arg)
        if arg == "--name":
            opts["name"] = value
        elif arg == "--port":
            opts["port"] = int(value)
        elif arg == "--txt":
            key, _, val = value.partition("=")
            opts["txt"][key] = val
        elif arg == "--addr":
            opts["addr"].append(value)
        elif arg == "--browse":
            opts["browse"] = value
        elif arg == "--timeout":
            opts["timeout"] = int(value)
        elif arg == "--run-ms":
            opts["run_ms"] = int(value)
        else:
            raise ValueError("unknown option " + arg)
        i += 2
    return opts


def _say(line):
    import sys

    print(line)
    try:
        sys.stdout.flush()
    except AttributeError:
        pass


async def _stdin_reader():
    import sys

    if hasattr(asyncio, "sleep_ms"):  # MicroPython: streams wrap any pollable object
        return asyncio.StreamReader(sys.stdin)
    import os as _os
    import stat

    if not stat.S_ISFIFO(_os.fstat(0).st_mode) and not sys.stdin.isatty():
        return None  # a file or /dev/null cannot be polled: no commands
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _read_commands(node, done):
    """Commands on stdin: `txt k=v ...`, `quit`. EOF on stdin is ignored (run until SIGINT)."""
    try:
        reader = await _stdin_reader()
    except (OSError, ValueError, AttributeError, TypeError):
        reader = None
    if reader is None:
        return  # stdin not pollable here: commands unavailable, SIGINT still works
    while True:
        line = await reader.readline()
        if not line:
            return
        if isinstance(line, bytes):
            line = line.decode()
        words = line.split()
        if words and words[0] == "txt":
            changes = {}
            for word in words[1:]:
                key, _, val = word.partition("=")
                changes[key] = val if val else None
            node.update_txt(changes)
            _say("TXT " + " ".join(words[1:]))
        elif words and words[0] == "quit":
            done.set()
            return


async def _run(opts, holder):
    start = ticks_ms()
    if not opts["addr"]:
        from .port import net

        opts["addr"] = net.local_ipv4()
    import json

    name = opts["name"] or "leither-runner"

    def log(line):
        if line.startswith("announced"):
            _say(f"ANNOUNCED {node.name} {ticks_diff(ticks_ms(), start)}")
        elif "is taken" in line:
            _say("RENAMED " + line)
        else:
            _say("LOG " + line)

    node = MDNS(name, opts["port"], opts["txt"], opts["addr"], log=log)
    holder.append(node)
    if opts["browse"]:
        node.responding = False  # browse only: do not advertise
        await node.start()
        found = await node.browse(opts["browse"], opts["timeout"], include_self=True)
        _say("BROWSE " + json.dumps(found))
        await node.stop()
        return
    await node.start()
    _say(f"READY {ticks_diff(ticks_ms(), start)}")
    done = asyncio.Event()
    asyncio.create_task(_read_commands(node, done))
    try:
        if opts["run_ms"]:
            await _wait_event(done, opts["run_ms"])
        else:
            await done.wait()
    finally:
        await node.stop()
        _say("GOODBYE " + node.name)


def main(argv=None):
    import sys

    try:
        opts = _parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print("leither.mdns:", err)
        print(_USAGE)
        return 2
    if opts is None or (not opts["name"] and not opts["browse"]):
        print(_USAGE)
        return 0 if opts is None else 2
    holder = []
    try:
        asyncio.run(_run(opts, holder))
    except KeyboardInterrupt:
        # MicroPython raises SIGINT's KeyboardInterrupt out of the event loop itself, so the
        # task's finally never runs: say goodbye here (a no-op if it already went out).
        for node in holder:
            if node.state != STOPPED:
                node.goodbye()
                node.close()
                _say("GOODBYE " + node.name)
    return 0


if __name__ == "__main__":
    main()

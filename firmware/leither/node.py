# The node runtime: one asyncio program that owns the board, the MiMei storage, the RPC server
# and mDNS. `python -m leither` and `micropython -m leither` both end up in run() here; a board's
# main.py calls main() with its saved config.
"""Leither node runtime."""

import asyncio
import json
import os
import sys

import leither

from . import identity
from .compat import IS_MICROPYTHON, const, exists, makedirs, ticks_diff, ticks_ms
from .errors import LeitherError

DEFAULT_PORT = const(4800)
# Bytes of flash the store keeps back from writes (leither.mimei.RESERVE; a test keeps the two
# equal): the TXT "free" of a node whose store is not open yet leaves it out too.
STORE_RESERVE = const(65536)
# Retention (last N versions + hourly/daily/weekly history) and block collection, every hour:
# often enough to bound the space old versions hold, rare enough not to wear the flash.
MAINTAIN_MS = const(3600000)
MAINTAIN_PACKS = const(8)  # packs sealed since the last maintenance (4 MiB) that start one early
_CONFIG = "config.json"
# Services the node runs beside storage, RPC and mDNS: module names under leither/, each with a
# Service(node) class (see Node.start). Imported lazily so a board without one still boots.
SERVICES = ("logring", "pairing", "backup", "naming")
USAGE = """usage: leither --root DIR [--board NAME] [--name NAME] [--port N] [--addr IP]
       [--claim-token TOKEN] [--no-mdns]
Runs a Leither node whose state lives under DIR."""


def parse_args(argv):
    """A tiny argument parser (MicroPython has no argparse): --key value pairs and flags."""
    opts = {}
    flags = ("no-mdns", "help")
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise LeitherError("unexpected argument %r" % arg)
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif key in flags:
            value = True
        else:
            i += 1
            if i >= len(argv):
                raise LeitherError("--%s needs a value" % key)
            value = argv[i]
        opts[key] = value
        i += 1
    if "help" in opts:
        return opts
    if "root" not in opts:
        raise LeitherError("--root DIR is required")
    if "port" in opts:
        try:
            opts["port"] = int(opts["port"])
        except ValueError:
            raise LeitherError("--port takes a number") from None
    return opts


def load_config(root):
    """The config saved at flash time (name, board, wifi, port), or {}."""
    path = root + "/" + _CONFIG
    if not exists(path):
        return {}
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        print("leither: ignoring unreadable %s: %s" % (path, err))
        return {}
    return config if isinstance(config, dict) else {}


def _left_out(service):
    """The optional part (leither.parts) a service that did not import belongs to, if this
    bundle left it out (pairing and backup on a stock-firmware ROMFS board), else None. Only
    then is parts imported: a node with every part keeps no parts module (~1 KB of heap)."""
    from . import parts

    for part, (modules, _what) in parts.PARTS.items():
        if service in modules and part not in parts.present():
            return part
    return None


def load_board(name, root, config):
    if name == "unix":
        from .port import unix as port
    elif name == "esp32":
        from .port import esp32 as port
    elif name == "pizero":
        from .port import pizero as port
    else:
        raise LeitherError("unknown board %r" % name)
    return port.Board(root, config)


class Node:
    """A running node; see run()."""

    def __init__(self, root, board="unix", name=None, port=DEFAULT_PORT, addr=None,
                 claim_token=None, mdns=True, config=None):
        self.root = root
        makedirs(root)
        self.config = config if config is not None else load_config(root)
        self.board_name = board
        self.identity = identity.load_identity(root)
        self.name = name or self.config.get("name") or "leither-" + self.identity.id[:6].lower()
        self.port = port
        self.addr = addr
        self.use_mdns = mdns
        self.started = ticks_ms()
        self._store = None  # the open mimei.Store (see the store property)
        self._unopened = None  # stands for it while the node runs and nothing needed it yet
        self.server = None
        self.mdns = None
        self.board = None
        self.led = None
        self.services = []  # Service objects: start(), stop(), on_press(), fact(), txt()
        self.left_out = ()  # optional parts (leither.parts) whose services this bundle lacks
        self._idle_due = False  # the last session ended while a service was busy
        self._tasks = []
        self._stopping = None
        owner = identity.load_owner(root)
        token = claim_token or self.config.get("claim_token")
        if owner is None:
            if token:
                identity.write_atomic(root + "/claim.token", token.encode(), private=True)
            self.claim_token = identity.claim_token(root)
        else:
            self.claim_token = None
        self.owner = owner

    # -- facts for GetVar and TXT ---------------------------------------------------------------

    # -- the MiMei store, opened when first needed ---------------------------------------------

    @property
    def store(self):
        """The node's mimei.Store. Opened (crash recovery included) by the first thing that
        uses it -- a MiMei call, a backup pass, maintenance: a node nobody has asked for a
        MiMei keeps the storage code (mimei, history, store, tree: ~7 KB of an ESP32's heap)
        out of its heap. None before start() and after stop()."""
        st = self._store
        return st if st is not None else self._unopened

    @store.setter
    def store(self, st):
        self._store = st

    def open_store(self):
        st = self._store
        if st is None:
            import gc

            # The storage code and the store's lasting objects come now, under way, beside a
            # session's garbage: collect first, so that they pack low in the heap instead of
            # into the holes between its objects, cutting up the free blocks that frames and
            # chunk buffers need later.
            gc.collect()
            from . import mimei

            st = mimei.Store(self.root + "/store", self.identity)
            if self._unopened is not None:
                st.on_delete = self._unopened.on_delete
            self._store = st
        return st

    def _trim(self):
        """Short of heap: the open store hands back its caches and pools."""
        if self._store is not None:
            self._store.trim()

    def _busy(self):
        """Is a service working in the background (a backup push or prune: its ``busy``)?"""
        for service in self.services:
            if getattr(service, "busy", None):
                return True
        return False

    def _idle(self):
        """The last session has ended. With no service at work, caches and pools go, and code
        loaded only for the work done (the db engine), so that the heap comes back to the idle
        node's; while one works (a backup push takes its 4 KiB chunk buffers from the store's
        pool: emptied under it, it may find no such block again), the housekeeping does it
        once the work is done."""
        if self._busy():
            self._idle_due = True
            return
        self._idle_due = False
        if self._store is not None:
            self._store.trim(unload=True)

    def free_kib(self):
        if self._store is not None:
            return self._store.free() // 1024
        try:
            st = os.statvfs(self.root)
        except (OSError, AttributeError):
            return 0
        return max(0, st[4] * st[1] - STORE_RESERVE) // 1024

    def fact(self, name):
        if name == "name":
            return self.name
        if name == "board":
            return self.board_name
        if name == "fw":
            return leither.FIRMWARE_VERSION
        if name == "uptime":
            return ticks_diff(ticks_ms(), self.started) // 1000
        if name == "free":
            return self.free_kib()
        if name == "heap":  # free heap in bytes (MicroPython); None on CPython
            return self.board.free_heap() if self.board is not None else None
        if name == "rss":  # resident memory in KiB where the OS reports it (CPython's figure)
            from . import memory

            return memory.resident_kib()
        if name == "led":
            return self.led.pattern if self.led is not None else None
        if name == "port":
            return self.server.port if self.server is not None else self.port
        if name == "mimei":
            return len(self.store.list())
        if name == "parts":  # the optional parts this bundle carries (leither.parts)
            from . import parts

            return parts.present()
        for service in self.services:
            try:
                return service.fact(name)
            except KeyError:
                pass
        if name == "pair":
            return False  # no pairing service on this node
        if name == "peer":
            return None
        raise KeyError(name)

    def txt(self):
        txt = {"id": self.identity.id, "v": str(leither.PROTOCOL_VERSION),
               "fw": leither.FIRMWARE_VERSION, "board": self.board_name,
               "pair": "0", "free": str(self.free_kib())}
        for service in self.services:
            service.txt(txt)
        return txt

    # -- button, LED and partner ---------------------------------------------------------------

    @property
    def partner(self):
        """The paired partner (dict: peer_id, peer_key, secret, code, quota_to_peer,
        quota_from_peer, addr, port, since) or None; kept by the pairing service."""
        for service in self.services:
            if hasattr(service, "partner"):
                return service.partner
        return None

    def show_idle_led(self):
        """The LED at rest: "claimed" once the node has an owner, else off."""
        if self.led is not None:
            self.led.show("claimed" if self.owner is not None else "off")

    def on_press(self, kind):
        print("leither: button %s press" % kind)
        handled = False
        for service in self.services:
            handled = service.on_press(kind) or handled
        if not handled:
            if "backup" not in self.left_out:
                print("leither: %s press does nothing on this node" % kind)
            else:  # no pairing here: say why, and blink "failed" as a refused pairing does
                from . import parts

                print("leither: %s press: %s" % (kind, parts.message("backup")))
                if self.led is not None:
                    self.led.show("error")
                    asyncio.create_task(self._led_back(5000))

    async def _led_back(self, ms):
        await asyncio.sleep(ms / 1000)
        if self.led is not None and self.led.pattern == "error":
            self.show_idle_led()

    def announce(self):
        """Tell the network at once that a TXT fact changed (pairing window, partner, ...)."""
        if self.mdns is not None:
            txt = self.txt()
            for key in self.mdns.txt:
                if key not in txt:
                    txt[key] = None  # a fact that went away (partner dropped): remove the key
            self.mdns.update_txt(txt)

    async def _housekeeping(self):
        """Refresh the free-space TXT when it moves; now and then apply the retention policy
        and collect the blocks nothing references any more (Store.maintain)."""
        last_free = self.free_kib()
        last_maintain = ticks_ms()
        every = int(self.config.get("maintain_ms", MAINTAIN_MS))
        # A store growing fast is collected before the period ends: a soak wrote 4 MB a minute
        # and its heap went to filters and buffers of packs full of dead blocks.
        many = int(self.config.get("maintain_packs", MAINTAIN_PACKS))
        packs_at = self._packs()
        opened = self._store is not None
        while True:
            await asyncio.sleep(min(1, every / 1000))
            if opened != (self._store is not None):
                # The store opened (at the first call that needs it) or closed: the packs it
                # holds were not sealed since the last run; counting them would start one
                # now, beside the push or restore that opened it.
                opened = not opened
                packs_at = self._packs()
            if self._idle_due and not self._busy() and (
                    self.server is None or self.server.connections == 0):
                self._idle()
            # Not beside a backup push or restore: they need the heap it takes (waits).
            if not self._busy() and (ticks_diff(ticks_ms(), last_maintain) >= every
                                     or self._packs() - packs_at >= many):
                last_maintain = ticks_ms()
                try:
                    done = await self._maintain()
                    print("leither: maintenance: %d versions thinned, %d bytes freed" % (
                        done.get("deleted", 0), done.get("freed", 0)))
                except (OSError, LeitherError, MemoryError) as err:
                    # Short of heap too: tried again next period (the loop must live on).
                    print("leither: maintenance failed: %r" % (err,))
                packs_at = self._packs()
            free = self.free_kib()
            if abs(free - last_free) * 100 > max(last_free, 1):  # moved by more than 1%
                last_free = free
                self.announce()

    def _packs(self):
        """Sealed packs in the open store (0 while none is open: opening it is not ours)."""
        st = self._store
        return st.blocks.sealed() if st is not None else 0

    async def _maintain(self):
        """Store.maintain in its small steps, serving sessions in between: retention and
        collection of a full board must not stall every client for their whole run."""
        steps = self.store.maintain_steps()
        try:
            while True:
                next(steps)
                await asyncio.sleep(0)
        except StopIteration as done:
            return done.args[0] if done.args else {}

    # -- life cycle -----------------------------------------------------------------------------

    def _on_claim(self, key):
        identity.save_owner(self.root, key)
        self.owner = key
        if self.led is not None:
            self.led.show("claimed")

    async def start(self):
        from . import api, memory, server
        from .led import LED

        memory.tune()

        self.board = load_board(self.board_name, self.root, self.config)
        self.led = LED(self.board)
        await self.board.network_up()
        self._unopened = _Unopened(self)
        self.server = server.Server(self.identity.seed, facts_provider=self.fact,
                                    owner_key=self.owner, claim_token=self.claim_token,
                                    on_claim=self._on_claim,
                                    max_frame=self.config.get("max_frame"))
        api.API(self.open_store).register(self.server)
        # Short of heap, the store first hands back its caches and buffer pools (Store.trim)
        # before the node answers "busy" or refuses a session; and once the last session has
        # ended, so that the heap goes back to the idle node's after each piece of work.
        self.server.on_short_heap = self._trim
        self.server.on_idle = self._idle
        left_out = self.left_out = []
        for name in SERVICES:
            try:
                module = __import__("leither." + name, None, None, ("Service",))
            except ImportError:
                part = _left_out(name)
                if part is None:
                    raise  # the module is here and failed: a bug to see, not a missing part
                if part not in left_out:
                    left_out.append(part)
                continue
            self.services.append(module.Service(self))
        for service in self.services:
            service.register(self.server)
        if left_out:  # their methods are answered no_part, not "no method"
            from . import parts

            self.server.add_table(parts.refuse(left_out))
        # Listen where asked (--addr, or "bind" in the config): a node told 127.0.0.1 must
        # not answer the LAN.
        await self.server.start(self.addr or self.config.get("bind") or "0.0.0.0", self.port)
        self.port = self.server.port
        if self.claim_token is not None:
            print("leither: unclaimed; claim token %s" % self.claim_token)
        else:
            self.led.show("claimed")
        if self.use_mdns:
            await self._start_mdns()
        for service in self.services:
            await service.start()
        self._tasks.append(asyncio.create_task(self.board.watch_button(self.on_press)))
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        print("leither: node %s name %s board %s port %d ready" % (
            self.identity.id, self.name, self.board_name, self.port))

    async def _start_mdns(self):
        from .mdns import make
        from .port import net

        addresses = [self.addr] if self.addr else net.local_ipv4()
        self.mdns = make(self.name, self.port, self.txt(), addresses)
        await self.mdns.start()  # probing goes on in the background
        self._tasks.append(asyncio.create_task(self._follow_name()))

    async def _follow_name(self):
        """Take the name mDNS settled on (it renames on a conflict, now or later)."""
        while self.mdns is not None:
            await self.mdns.announced.wait()
            if self.mdns is not None and self.mdns.name != self.name:
                print("leither: name %s taken on the network; now %s" % (
                    self.name, self.mdns.name))
                self.name = self.mdns.name
            await asyncio.sleep(1)

    async def stop(self):
        """Say goodbye on mDNS, stop serving, close the stores."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        for service in reversed(self.services):
            try:
                await service.stop()
            except (OSError, LeitherError) as err:
                print("leither: stopping %s failed: %s" % (type(service).__name__, err))
        if self.led is not None:
            self.led.stop()
        if self.mdns is not None:
            try:
                await self.mdns.stop()
            except (OSError, LeitherError) as err:
                print("leither: mDNS goodbye failed: %s" % err)
            self.mdns = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        self._unopened = None
        if self._store is not None:
            self._store.close()
            self._store = None
        print("leither: stopped")

    async def run_forever(self):
        self._stopping = asyncio.Event()
        await self.start()
        if not IS_MICROPYTHON:
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._stopping.set)
                except (NotImplementedError, RuntimeError):
                    pass
        try:
            await self._stopping.wait()
        finally:
            await self.stop()


class _Unopened:
    """Node.store while the store is not open: any attribute read opens it (Node.open_store)
    and is served by it; ``on_delete`` set here (leither.backup's tombstones) goes to the
    store when it opens."""

    def __init__(self, node):
        self._node = node
        self.on_delete = None

    def __getattr__(self, name):
        return getattr(self._node.open_store(), name)


def main(argv=None):
    """Entry of `python -m leither` / `micropython -m leither`; returns an exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except LeitherError as err:
        print("leither: %s\n%s" % (err, USAGE))
        return 2
    if "help" in opts:
        print(USAGE)
        return 0
    root = opts["root"].rstrip("/") or "/"
    makedirs(root)
    config = load_config(root)
    node = Node(root, board=opts.get("board") or config.get("board") or "unix",
                name=opts.get("name"), port=opts.get("port") or config.get("port") or DEFAULT_PORT,
                addr=opts.get("addr"), claim_token=opts.get("claim-token"),
                mdns=not opts.get("no-mdns"), config=config)
    try:
        asyncio.run(node.run_forever())
    except KeyboardInterrupt:
        # MicroPython: Ctrl-C / SIGINT interrupts the loop; finish the goodbye on a fresh one.
        if node.server is not None or node.mdns is not None:
            asyncio.run(node.stop())
    except LeitherError as err:
        print("leither: %s" % err)
        return 1
    return 0

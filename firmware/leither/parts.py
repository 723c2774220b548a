# Optional parts (micropython-lib's aioble model): groups of modules a board's bundle may
# leave out. A firmware image with Leither frozen in carries every part (flash holds far more
# than the bundle); a board that runs the .mpy bundle from a ROMFS partition carries the parts
# its board.json "bundle_parts" lists (the ESP32's 128 KiB partition: the core and the db).
# A request that needs a part this node lacks is answered "no_part", in words a user can act on.
"""The node's optional parts: which this bundle carries, and the error when one is missing."""

from .errors import RPCError

# part -> (its modules, the first being the one the node imports; what users know it by)
PARTS = {"db": (("db", "dbcoll", "dbpage", "dbio", "dbcodec"), "db engine"),
         # Stock ESP32 firmware keeps UDP 5353 for ESP-IDF's own responder: there the node can
         # only browse (leither.mdns), and the board's ROMFS bundle needs no responder.
         "mdns_responder": (("mdnsresp",), "mDNS responder"),
         # Button pairing finds the other board by its advertisement, so a bundle without the
         # responder cannot pair, and backup and restore need a partner: on stock firmware
         # (the ESP32's ROMFS bundle) they would be code nothing can run. The first two are the
         # node's services (node.SERVICES); the rest only they import.
         "backup": (("pairing", "backup", "pairwin", "pairproto", "pairrun", "backup_push",
                     "backup_partner", "backup_prune", "backup_audit", "restore", "vault",
                     "fence", "receipt", "seal", "treediff", "rpcclient"),
                    "pairing and backup")}

# The methods a left-out part would serve, by prefix: asked of a node without the part, they
# are answered no_part (not "unknown method"), and to anyone (a pairing board asks too).
METHODS = {"backup": ("Pair", "Unpair", "Backup", "BK", "GetReceipts")}


class MissingPart(RPCError):
    """A request needs an optional part this board's bundle left out."""

    def __init__(self, part):
        super().__init__("no_part", message(part))
        self.part = part


def message(part):
    return ("this board's bundle has no %s; flash the frozen firmware (it carries every part)"
            % PARTS[part][1])


def refuse(left_out):
    """A method table (Server.add_table) answering no_part for the methods of the parts in
    ``left_out``: registered methods come first, so a part's own methods win where it is."""
    from .rpc import GUEST, OWNER, PEER

    prefixes = [(p, part) for part in left_out for p in METHODS.get(part, ())]

    def resolve(name):
        for prefix, part in prefixes:
            if name.startswith(prefix):
                return _refuser(part), (OWNER, PEER, GUEST), None
        return None

    return resolve


def _refuser(part):
    def handler(caller, params, name):
        raise MissingPart(part)

    return handler


def present():
    """The optional parts this node carries, by name (sorted), without importing them."""
    import os

    import leither

    base = leither.__file__.rsplit("/", 1)[0]
    try:
        os.stat(leither.__file__)
    except OSError:
        return sorted(PARTS)  # frozen into the firmware: every part is (boards/*/manifest.py)
    have = []
    for part, (modules, _what) in PARTS.items():
        for ext in (".mpy", ".py"):
            try:
                os.stat(base + "/" + modules[0] + ext)
            except OSError:
                continue
            have.append(part)
            break
    return sorted(have)


def load(part):
    """The part's first module, imported; MissingPart if this bundle left the part out."""
    name = "leither." + PARTS[part][0][0]
    try:
        return __import__(name, None, None, ("_",))
    except ImportError:
        if part in present():
            raise  # it is here, and its own import failed: not a missing part
        raise MissingPart(part) from None

# A node's own name, set by its owner (`leither rename`): kept in config.json (where a flashed
# board keeps the name it was given), and announced on mDNS at once, probing again under the
# new name (a taken name is renamed by mDNS as on first boot).
"""SetName: rename the node."""

import json

from .compat import const
from .errors import RPCError
from .identity import write_atomic

NAME_MAX = const(63)  # characters: one DNS label


def valid_name(name):
    if not isinstance(name, str) or not 0 < len(name) <= NAME_MAX or name[0] == "-":
        return False
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "-_") or ord(c) > 127:
            return False
    return True


class Service:
    """SetName for the owner (leither.node services hook)."""

    def __init__(self, node):
        self.node = node

    def register(self, server):
        from .rpc import OWNER

        server.register("SetName", self._set_name, (OWNER,))

    async def _set_name(self, caller, params):
        name = params.get("name") if isinstance(params, dict) else None
        if not valid_name(name):
            raise RPCError("bad_request", "a name is 1-%d letters, digits, '-' or '_'" % NAME_MAX)
        node = self.node
        config = dict(node.config or {})
        config["name"] = name
        write_atomic(node.root + "/config.json", json.dumps(config).encode())
        node.config = config
        old = node.name
        node.name = name
        if node.mdns is not None:
            await node.mdns.stop()  # goodbye under the old name, then probe the new one
            node.mdns = None
            await node._start_mdns()
        print("leither: renamed %s to %s" % (old, name))
        return {"name": name, "old": old}

    async def start(self):
        pass

    async def stop(self):
        pass

    def on_press(self, kind):
        return False

    def fact(self, name):
        raise KeyError(name)

    def txt(self, txt):
        pass

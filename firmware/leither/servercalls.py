# The RPC server's built-in methods: GetVar (the node's facts, by role) and Claim (the first
# owner, with the one-time token). leither.server registers them and loads this module at
# their first call: an idle node that nobody has asked anything keeps none of it.
"""GetVar and Claim, served by every Leither node to every role (see leither.server)."""

import hashlib

from . import crypto, ids, memory, rpc
from .errors import RPCError
from .rpc import GUEST, OWNER

# Facts a guest may read with GetVar; the rest (and any provider fact) need owner or peer.
PUBLIC_FACTS = ("id", "v", "name", "board", "fw", "uptime", "free", "heap", "heap_low",
                "claimed", "role", "pair", "peer", "replaced")
# Facts a paired peer may read beyond the public ones: counts only. Provider facts such as
# "backup" list MiMei IDs in plain text, which the sealed catalog hides from the partner.
PEER_FACTS = ("connections", "port", "busy")


def get_var(server, caller, params):
    name = params.get("name") if isinstance(params, dict) else params
    if not isinstance(name, str):
        raise RPCError("bad_request", "GetVar takes a fact name")
    if caller.role != OWNER and name not in PUBLIC_FACTS and (
            caller.role == GUEST or name not in PEER_FACTS):
        raise RPCError("forbidden", "fact %s is not for a %s" % (name, caller.role))
    if name == "id":
        return server.node_id
    if name == "v":
        return rpc.VERSION
    if name == "role":
        return caller.role
    if name == "claimed":
        return server.owner_key is not None
    if name == "owner":
        return None if server.owner_key is None else ids.make_id(server.owner_key)
    if name == "connections":
        return len(server.admission.conns)
    if name == "busy":  # requests and sessions answered "busy" for want of heap
        return memory.busy_count()
    if name == "heap_low":  # least free heap seen (bytes; None where not measured)
        return memory.low_water()
    if server.facts_provider is not None:
        try:
            return server.facts_provider(name)
        except KeyError:
            pass
    raise RPCError("not_found", "no fact %s" % name)


def claim(server, caller, params):
    token = params.get("token") if isinstance(params, dict) else params
    if server.owner_key is not None:
        raise RPCError("claimed", "node already has an owner")
    if server.claim_token is None:
        raise RPCError("no_token", "node has no claim token; reflash it")
    if not isinstance(token, (str, bytes)):
        raise RPCError("bad_request", "Claim takes {\"token\": text}")
    # Back-off per source address: a guesser slows itself down, not the owner elsewhere.
    host = caller.addr.rsplit(":", 1)[0] if caller.addr else "?"
    if server.admission.claim_blocked(host):
        raise RPCError("busy", "a wrong token came from %s just now; retry in a second"
                       % host)
    if not crypto.equal(_digest(token), _digest(server.claim_token)):
        server.admission.claim_failed(host)
        server.log("%s: wrong claim token" % caller.addr)
        raise RPCError("bad_token", "wrong claim token")
    if server.on_claim is not None:
        server.on_claim(caller.key)  # persist first: a failure leaves the node unclaimed
    server.owner_key = caller.key
    server.claim_token = None
    caller.role = OWNER
    for conn in server.admission.conns:
        if conn.caller is caller:
            conn.max_frame = server.max_frame
    server.log("claimed by %s" % caller.id)
    return {"owner": caller.id, "node": server.node_id, "role": OWNER,
            "max_frame": server.max_frame}


def _digest(token):
    """SHA-256 of a token, so the constant-time compare sees equal lengths."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()

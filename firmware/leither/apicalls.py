# The handlers of the node's MiMei, file and db methods (leither.api registers them): loaded
# with the storage code at the first such call, so an idle node keeps neither in its heap.
"""Handlers of the MiMei, file and db RPC methods (see leither.api)."""

from . import cbor
from .compat import const
from .errors import RPCError
from .reply import Bulk

ALL_RIGHTS = const(15)  # leither.mimei.ALL (a test keeps them equal)
_PAGE = 100  # MiMei per MMList page unless the client asks for fewer
_PAGE_OVERHEAD = 64  # bytes of a page's CBOR besides its items ({"items", "next": id})


def _arg(params, name, kind=None, default=RPCError):
    if not isinstance(params, dict):
        raise RPCError("bad_request", "parameters must be a map")
    value = params.get(name, default)
    if value is RPCError:
        raise RPCError("bad_request", "missing parameter %s" % name)
    if kind is not None and value is not None and not isinstance(value, kind):
        raise RPCError("bad_request", "parameter %s has the wrong type" % name)
    return value


def _version(params):
    v = _arg(params, "version", (str, int, bytes), "cur")
    return v


def _summary(rec):
    return {"n": rec["n"], "root": rec["root"], "size": rec["size"], "time": rec["time"],
            "type": rec["type"]}


class Calls:
    """The handlers, over the store and frame size of one leither.api.API."""

    def __init__(self, api):
        self.api = api

    @property
    def store(self):
        return self.api.store

    @property
    def max_data(self):
        return self.api.max_data

    # -- MiMei ---------------------------------------------------------------------------------

    def mm_create(self, caller, params, name=None):
        return self.store.create(_arg(params, "app", str), _arg(params, "ext", str, ""),
                                 _arg(params, "mark", str, ""), _arg(params, "type", str, "file"))

    def mm_list(self, caller, params, name=None):
        """One page of MiMei summaries: {"items", "next"} for {"cursor", "limit"} (IDs after
        ``cursor`` in ID order, at most ``limit`` and what fits one reply frame; ``next`` is
        the cursor of the following page or None). Without either: the old plain list."""
        if not isinstance(params, dict) or ("cursor" not in params and "limit" not in params):
            return [self.store.info(mid) for mid in self.store.list()]
        cursor = _arg(params, "cursor", str, None)
        limit = _arg(params, "limit", int, _PAGE)
        if limit is None or limit < 1:
            raise RPCError("bad_request", "limit must be a positive count")
        room = (self.max_data or 65536) - _PAGE_OVERHEAD
        items = []
        ids = sorted(mid for mid in self.store.list() if cursor is None or mid > cursor)
        for mid in ids:
            if len(items) >= limit:
                break
            info = self.store.info(mid)
            room -= len(cbor.dumps(info))
            if room < 0 and items:
                break
            items.append(info)
        more = len(items) < len(ids)
        return {"items": items, "next": items[-1]["id"] if more and items else None}

    def mm_info(self, caller, params, name=None):
        return self.store.info(_arg(params, "mid", str))

    def mm_versions(self, caller, params, name=None):
        return self.store.versions(_arg(params, "mid", str))

    def mm_backup(self, caller, params, name=None):
        rec = self.store.backup(_arg(params, "mid", str))
        return _summary(rec)

    def mm_release(self, caller, params, name=None):
        self.store.release(_arg(params, "mid", str), _arg(params, "version", (str, int), "last"))
        return self.store.info(params["mid"])["release"]

    def mm_restore(self, caller, params, name=None):
        self.store.restore(_arg(params, "mid", str), _arg(params, "version", (str, int, bytes)))
        return self.store.info(params["mid"])

    def mm_del_vers(self, caller, params, name=None):
        versions = _arg(params, "versions", list)
        return self.store.del_versions(_arg(params, "mid", str), versions)

    def mm_add_ref(self, caller, params, name=None):
        return self.store.add_ref(_arg(params, "mid", str), _arg(params, "ref", str))

    def mm_del_ref(self, caller, params, name=None):
        return self.store.del_ref(_arg(params, "mid", str), _arg(params, "ref", str))

    def mm_get_ref(self, caller, params, name=None):
        return self.store.get_ref(_arg(params, "mid", str))

    def mm_set_right(self, caller, params, name=None):
        bits = _arg(params, "rights", int)
        if bits < 0 or bits > ALL_RIGHTS:
            raise RPCError("bad_request", "rights must be a bitmask 0..%d" % ALL_RIGHTS)
        self.store.set_right(_arg(params, "mid", str), _arg(params, "member", str), bits)
        return bits

    def mm_get_right(self, caller, params, name=None):
        member = _arg(params, "member", str, caller.id)
        return self.store.get_right(_arg(params, "mid", str), member)

    def mm_remove(self, caller, params, name=None):
        self.store.remove(_arg(params, "mid", str))
        return True

    # -- files ---------------------------------------------------------------------------------

    def mf_set_data(self, caller, params, name=None):
        # "sync": false for the pieces of an upload but its last: they are written without a
        # durable commit each (see mimei.Store.set_data); the last piece commits them all.
        # "stage": true writes a whole-file put beside cur, swapped in by MFCommit.
        data = _arg(params, "data", (bytes, bytearray, memoryview))
        return self.store.set_data(_arg(params, "mid", str), _arg(params, "offset", int, 0), data,
                                   _arg(params, "sync", bool, True) is not False,
                                   _arg(params, "stage", bool, False) is True)

    def mf_commit(self, caller, params, name=None):
        # The staged put becomes cur in one step ({"discard": true}: dropped); the new size.
        # "size": what the client sent; a stage of another size is refused.
        mid = _arg(params, "mid", str)
        if _arg(params, "discard", bool, False):
            return self.store.discard(mid)
        return self.store.commit(mid, _arg(params, "size", int, None))

    def mf_get_data(self, caller, params, name=None):
        length = _arg(params, "length", int, self.max_data)
        if length is None or length < 0:
            raise RPCError("bad_request", "length must be a count of bytes")
        if self.max_data is not None and length > self.max_data:
            length = self.max_data  # the client loops over offset; see Server.max_data
        mid = _arg(params, "mid", str)
        offset = _arg(params, "offset", int, 0)
        version = _version(params)
        store = self.store
        n = store.read_length(mid, offset, length, version)

        def fill(view):
            # Straight into the reply frame: no frame-sized bytes per call (server.Bulk).
            return store.get_into(mid, offset, view, version)

        return Bulk(n, fill)

    def mf_get_size(self, caller, params, name=None):
        return self.store.size(_arg(params, "mid", str), _version(params))

    def mf_stat(self, caller, params, name=None):
        return self.store.stat(_arg(params, "mid", str))

    def mf_truncate(self, caller, params, name=None):
        return self.store.truncate(_arg(params, "mid", str), _arg(params, "size", int))

    # -- db ------------------------------------------------------------------------------------

    def db_call(self, caller, params, name):
        """Db method `name` on the MiMei params["mid"] with params["args"]."""
        args = _arg(params, "args", list, [])
        return self.store.db(_arg(params, "mid", str)).call(name, args)

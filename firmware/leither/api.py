# The node's RPC methods over its MiMei storage, under Leither's names (DESIGN §4): MM* for
# MiMei and versions, MF* for file content, and the Redis-like db methods. Parameters are CBOR
# maps with named fields; db methods take {"mid", "args": [...]}, like redis-cli's arguments.
"""Registers the MiMei, file and db methods of a Store on a Server."""

from .rpc import OWNER, PEER

# Db methods that only read; every other db method needs the write right.
DB_READ = ("Get", "Strlen", "Exists", "Type", "Scan", "Hget", "Hlen", "Hmget", "Hgetall",
           "Hkeys", "Hscan", "Lrange", "Lindex", "Llen", "Scard", "Smembers", "Sismember",
           "Sscan", "Sinter", "Sunion", "Sdiff", "Zscore", "Zrank", "Zrange", "Zrevrange",
           "Zrangebyscore", "Zrevrangebyscore", "Zcard", "Zcount")
DB_WRITE = ("Set", "Del", "Incr", "IncrBy", "Hset", "Hdel", "Hmset", "HincrBy", "Lpush", "Rpush",
            "Lpop", "Rpop", "Lset", "Sadd", "Srem", "Zadd", "Zrem", "ZincrBy", "Begin", "Commit",
            "Rollback")
# The rights bits (leither.mimei.READ, WRITE, ADMIN, BACKUP: this module does not import the
# storage code, which a node loads when the first MiMei call comes; a test keeps them equal).
RIGHT_BITS = {"read": 1, "write": 2, "admin": 4, "backup": 8}

_ROLES = ((OWNER,), (OWNER, PEER))
# (method, handler attribute, roles index in _ROLES, right a non-owner needs or None). A constant
# table: frozen with the code on a board (flash), resolved per call by API.resolve.
_TABLE = (
    ("MMCreate", "mm_create", 0, None),
    ("MMList", "mm_list", 0, None),
    ("MMInfo", "mm_info", 0, "read"),
    ("MMVersions", "mm_versions", 0, "read"),
    ("MMRelease", "mm_release", 0, "admin"),
    ("MMRestore", "mm_restore", 0, "write"),
    ("MMDelVers", "mm_del_vers", 0, "admin"),
    ("MMAddRef", "mm_add_ref", 0, "write"),
    ("MMDelRef", "mm_del_ref", 0, "write"),
    ("MMGetRef", "mm_get_ref", 0, "read"),
    ("MMSetRight", "mm_set_right", 0, None),
    ("MMGetRight", "mm_get_right", 1, None),
    ("MMRemove", "mm_remove", 0, None),
    ("MFSetData", "mf_set_data", 0, "write"),
    ("MFGetData", "mf_get_data", 0, "read"),
    ("MFGetSize", "mf_get_size", 0, "read"),
    ("MFStat", "mf_stat", 0, "read"),
    ("MFTruncate", "mf_truncate", 0, "write"),
    ("MFCommit", "mf_commit", 0, "write"),
)


class API:
    """The methods of one Store; ``register(server)`` puts them on the server.

    ``store`` is the Store, or a function returning it (leither.node passes its open_store:
    the store and its code are loaded when the first call needs them, not at boot). The
    handlers themselves (leither.apicalls) come with the first call too; ``api.mm_list`` and
    the like reach them directly."""

    def __init__(self, store, max_data=None):
        self._store = store
        self._max_data = max_data
        self._server = None
        self._calls = None  # the apicalls.Calls, made by the first call

    def calls(self):
        calls = self._calls
        if calls is None:
            from .apicalls import Calls

            calls = self._calls = Calls(self)
        return calls

    def __getattr__(self, name):
        return getattr(self.calls(), name)

    @property
    def store(self):
        st = self._store
        if callable(st):
            st = self._store = st()
        return st

    @property
    def max_data(self):
        """The most bytes a result may carry: the server's (asked when a call needs it)."""
        if self._max_data is None and self._server is not None:
            self._max_data = self._server.max_data
        return self._max_data

    def register(self, server):
        self._server = server
        # MMBackup stays a registered method: the backup service wraps it (it reads the entry
        # back from the server to kick a push after every backup).
        server.register("MMBackup", self.mm_backup, _ROLES[0], right="write")
        server.add_table(self.resolve)
        server.zero_copy.add("MFSetData")  # the store writes the data before returning
        server.rights = self.allows

    def resolve(self, name):
        """(handler, roles, right) of one of this API's methods, or None (Server.add_table)."""
        for entry in _TABLE:
            if entry[0] == name:
                return getattr(self.calls(), entry[1]), _ROLES[entry[2]], entry[3]
        if name in DB_READ:
            return self.calls().db_call, _ROLES[0], "read"
        if name in DB_WRITE:
            return self.calls().db_call, _ROLES[0], "write"
        return None

    def allows(self, key, right, method, params):
        """Rights of a non-owner: the MiMei's bitmask for the caller's member ID."""
        from . import ids

        mid = params.get("mid") if isinstance(params, dict) else None
        if not isinstance(mid, str) or not self.store.exists(mid):
            return False
        bits = self.store.get_right(mid, ids.make_id(key))
        return bool(bits & RIGHT_BITS[right])

    def mm_backup(self, caller, params, name=None):
        """MMBackup, registered at boot (leither.backup wraps it), served by the handlers."""
        return self.calls().mm_backup(caller, params, name)

# Secrets on a node's disk (issue 10 row 6) and the backup service's door for guests (row 5):
# node.key, claim.token and backup/backup.key are mode 0600 from their first byte, a leftover
# temp file cannot widen that; a guest's BKStat cannot tell which paths exist on the node.
# Runs under CPython and MicroPython (the unix port: it has file modes; a board's LittleFS or
# FAT has none, see README "Secrets on a board").
import os

from leither import backup, crypto, identity, ids, mimei
from leither.errors import AuthError, DecodeError, RPCError

from testutil import raises, rmtree, tmpdir

MP_HEAP = "256K"  # the backup service and a store, as .mpy in the heap


def _mode(path):
    return os.stat(path)[0] & 0o777


class _Spy:
    """Wraps identity.fsync: notes the mode of every temp file under dirs at the moment its
    bytes were written (the window a chmod after the write would leave open)."""

    def __init__(self, dirs):
        self.dirs = dirs
        self.seen = {}
        self.real = identity.fsync

    def __call__(self, f):
        self.real(f)
        for d in self.dirs:
            for name in os.listdir(d):
                if name.endswith(".tmp"):
                    self.seen[name[:-4]] = _mode(d + "/" + name)


def test_secrets_are_private_from_the_first_byte():
    root = tmpdir("secrets")
    try:
        os.mkdir(root + "/backup")
        spy = _Spy((root, root + "/backup"))
        identity.fsync = spy
        try:
            # A leftover temp file from a crash, world-readable: the new secret must not land
            # in it with its old mode.
            with open(root + "/node.key.tmp", "wb") as f:
                f.write(b"old")
            assert _mode(root + "/node.key.tmp") & 0o044
            ident = identity.load_identity(root)
            token = identity.claim_token(root)
            node = _Node(root, ident)
            svc = backup.Service(node)
            svc.set_key(crypto.random(32))
            node.store.close()
        finally:
            identity.fsync = spy.real
        for name in ("node.key", "claim.token", "backup.key"):
            assert spy.seen.get(name) == 0o600, (name, spy.seen)
        for path in ("/node.key", "/claim.token", "/backup/backup.key"):
            assert _mode(root + path) == 0o600, path
        assert identity.claim_token(root) == token
        assert identity.load_identity(root).seed == ident.seed
    finally:
        rmtree(root)


class _Server:
    def __init__(self):
        self._methods = {}
        self._conns = []
        self._tables = []
        self.zero_copy = set()
        self.max_data = 8000

    def register(self, name, fn, roles, right=None):
        self._methods[name] = (fn, roles, right)

    def add_table(self, resolve):
        self._tables.append(resolve)


class _Node:
    def __init__(self, root, ident):
        self.root = root
        self.config = {}
        self.identity = ident
        self.store = mimei.Store(root + "/store", ident)
        self.owner = None
        self.port = 4800
        self.services = []
        self.server = _Server()
        self.partner = None


class _Caller:
    def __init__(self, key, role):
        self.key = key
        self.id = ids.make_id(key)
        self.role = role
        self.addr = "127.0.0.1:1"


def test_a_guest_cannot_probe_paths_through_bkstat():
    root = tmpdir("bkstat")
    try:
        node = _Node(root, identity.load_identity(root))
        svc = backup.Service(node)
        svc.register(node.server)
        (table,) = node.server._tables

        def stat(caller, params):
            return table("BKStat")[0](caller, params, "BKStat")

        guest = _Caller(crypto.sign_public(crypto.random(32)), "guest")
        # Paths that exist and paths that do not get the same answer: not a node ID (what
        # leither.server answers bad_request for).
        for path in ("../../../../etc/passwd", "../../../../no/such/file", "../node.key",
                     "..", "", "vault", 7):
            err = raises((DecodeError, RPCError), stat, guest, {"node": path})
            assert isinstance(err, DecodeError) or err.code == "bad_request"
        # A node ID with no vault here, and one whose vault the guest does not own: the same.
        other = ids.make_id(crypto.sign_public(crypto.random(32)))
        raises(AuthError, stat, guest, {"node": other})
        os.mkdir(root + "/vault")
        os.mkdir(root + "/vault/" + other)
        raises(AuthError, stat, guest, {"node": other})
        for v in svc.vaults.values():
            v.close()
        node.store.close()
    finally:
        rmtree(root)


def test_a_secret_left_readable_is_made_private():
    root = tmpdir("tighten")
    try:
        with open(root + "/claim.token", "wb") as f:  # as a tool or an older version wrote it
            f.write(b"0123456789abcdef\n")
        assert _mode(root + "/claim.token") & 0o044
        assert identity.claim_token(root) == "0123456789abcdef"
        assert _mode(root + "/claim.token") == 0o600
    finally:
        rmtree(root)

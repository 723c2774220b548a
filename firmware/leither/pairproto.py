# The pairing exchange itself (DESIGN §5): messages and key schedule, bytes in, bytes out, no
# I/O. leither.pairrun imports it only when two windows meet, and the service forgets both
# once the window is over, so an idle node keeps none of it in its heap.
"""Button pairing protocol: the signed X25519 exchange of two nodes (Initiator, Responder).

Protocol (version 1; I = initiator, the node with the lower raw node ID; R = responder)
-------------------------------------------------------------------------------------
Both nodes have pressed their button (window open, TXT ``pair=1``) and each sees exactly one
other node with ``pair=1`` in its window (leither.pairwin). I opens an RPC session to R (the
RPC handshake pins R's node ID as seen on mDNS) and calls::

    PairHello   I -> R  {"v": 1, "key": P_i, "eph": E_i, "commit": SHA-256(n_i), "quota": q_i}
                R -> I  {"key": P_r, "eph": E_r, "nonce": n_r, "quota": q_r, "sig": sig_r}
    PairConfirm I -> R  {"nonce": n_i, "sig": sig_i}
                R -> I  {"mac": mac_r}

    P: static Ed25519 keys (P_i must be the RPC caller's key, P_r the RPC node's key);
    E: fresh X25519 keys; n: 16 random bytes; q: bytes of storage granted to the other.
    h1 = SHA-256("leither-pair/1" || cbor(hello))
    h2 = SHA-256(h1 || cbor([P_r, E_r, n_r, q_r]))
    sig_r = Ed25519(R, "leither-pair/1 responder" || h2)
    h3 = SHA-256(h2 || n_i)                      (R checks SHA-256(n_i) == commit first)
    sig_i = Ed25519(I, "leither-pair/1 initiator" || h3)
    secret || mac_key = HKDF-SHA256(X25519(e_i, E_r), salt=h3, info="leither-pair/1", 48)
    mac_r = HMAC-SHA256(mac_key, "leither-pair/1 done" || h3)[:16]   (key confirmation)
    code  = uint32_be(SHA-256("leither-pair/1 code" || h3)[:4]) mod 10**6, six digits
    tag   = SHA-256("leither-pair/1 tag" || h3)[:16]   (names this pairing; kept by both)

R saves the pairing before it answers PairConfirm, so a reply lost on the way (a dropped
link, a reset) would leave R paired and I not. I then asks R, over a new session pinned to
R's key::

    PairCheck   I -> R  {"tag": tag}
                R -> I  {"paired": true | false}

true only if R's saved partner is the caller's key with this tag: only R, having checked I's
nonce and signature, knows h3, so a true answer confirms the key as well as mac_r does, and
I saves the pairing too. false: R did not keep this exchange and I's window carries on.

I commits to n_i before it sees n_r and R fixes n_r before it sees n_i, so neither side can
steer the 6-digit code: a man in the middle matches both users' codes with chance 1e-6.
"""

from . import cbor, crypto, ids
from .compat import const
from .errors import AuthError, DecodeError, PairingError
from .pairing import field

VERSION = const(1)
_LABEL = b"leither-pair/1"
_RESP_SIG = b"leither-pair/1 responder"
_INIT_SIG = b"leither-pair/1 initiator"
_DONE = b"leither-pair/1 done"
_CODE = b"leither-pair/1 code"
_TAG = b"leither-pair/1 tag"
_NONCE_LEN = const(16)
_MAC_LEN = const(16)
_ORDER = "pairing messages out of order"


def _hash(*parts):
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def _only(msg, names):
    if not isinstance(msg, dict) or len(msg) != len(names):
        raise DecodeError("pairing message must be a map of %s" % ", ".join(names))
    for name in names:
        if name not in msg:
            raise DecodeError("pairing message lacks %s" % name)


def sas_code(h3):
    """The 6-digit short authentication code of a finished transcript."""
    return "%06d" % (int.from_bytes(_hash(_CODE, h3)[:4], "big") % 1000000)


def pair_tag(h3):
    """The 16 bytes that name one finished exchange (PairCheck)."""
    return _hash(_TAG, h3)[:16]


def _keys(dh, h3):
    okm = crypto.hkdf(dh, h3, _LABEL, 48)
    return okm[:32], okm[32:]


def _result(peer_key, secret, h3, quota_to_peer, quota_from_peer):
    return {"peer_id": ids.make_id(peer_key), "peer_key": peer_key, "secret": bytes(secret),
            "code": sas_code(h3), "tag": pair_tag(h3), "quota_to_peer": quota_to_peer,
            "quota_from_peer": quota_from_peer}


class Initiator:
    """I's side: ``hello()``, then ``confirm(reply)``, then ``finish(done)`` -> result dict
    (peer_id, peer_key, secret, code, tag, quota_to_peer, quota_from_peer)."""

    def __init__(self, seed, quota, expected_key=None):
        self._seed = seed
        self._quota = quota
        self._expected = expected_key  # the RPC node's key: R must sign with that one
        self._eph = None
        self._nonce = None
        self._h = None
        self._pending = None

    def hello(self):
        if self._eph is not None:
            raise PairingError("hello already sent")
        self._eph = crypto.dh_keypair()
        self._nonce = crypto.random(_NONCE_LEN)
        msg = {"v": VERSION, "key": crypto.sign_public(self._seed), "eph": self._eph[1],
               "commit": _hash(self._nonce), "quota": self._quota}
        self._h = _hash(_LABEL, cbor.dumps(msg))
        return msg

    def confirm(self, reply):
        """Check R's signed reply; return the confirm message."""
        if self._h is None or self._pending is not None:
            raise PairingError(_ORDER)
        _only(reply, ("key", "eph", "nonce", "quota", "sig"))
        key = field(reply, "key", 32)
        eph = field(reply, "eph", 32)
        nonce = field(reply, "nonce", _NONCE_LEN)
        quota = field(reply, "quota")
        sig = field(reply, "sig", 64)
        if self._expected is not None and not crypto.equal(key, self._expected):
            raise AuthError("pairing reply signed by another key than the node's")
        h2 = _hash(self._h, cbor.dumps([key, eph, nonce, quota]))
        if not crypto.verify(key, _RESP_SIG + h2, sig):
            raise AuthError("responder's pairing signature does not verify")
        h3 = _hash(h2, self._nonce)
        secret, mac_key = _keys(crypto.dh(self._eph[0], eph), h3)
        self._eph = None
        self._pending = (key, secret, mac_key, h3, quota)
        return {"nonce": self._nonce, "sig": crypto.sign(self._seed, _INIT_SIG + h3)}

    def tag(self):
        """After confirm(): the tag R saved if it accepted the confirm (PairCheck)."""
        if self._pending is None:
            raise PairingError(_ORDER)
        return pair_tag(self._pending[3])

    def finish(self, done):
        """Check R's key confirmation; return the result. done None: R's PairCheck, on a
        session pinned to R's key, said it saved this exchange, which stands in for a
        confirmation lost on the way."""
        if self._pending is None:
            raise PairingError(_ORDER)
        key, secret, mac_key, h3, quota = self._pending
        self._pending = None
        if done is not None:
            _only(done, ("mac",))
            mac = field(done, "mac", _MAC_LEN)
            if not crypto.equal(mac, crypto.hmac_sha256(mac_key, _DONE + h3)[:_MAC_LEN]):
                raise AuthError("responder did not derive the same pairing secret")
        return _result(key, secret, h3, self._quota, quota)


class Responder:
    """R's side: ``reply(hello, caller_key)``, then ``finish(confirm)`` -> (result, done)."""

    def __init__(self, seed, quota):
        self._seed = seed
        self._quota = quota
        self._state = None
        self.peer_key = None

    def reply(self, hello, caller_key=None):
        if self._state is not None:
            raise PairingError(_ORDER)
        _only(hello, ("v", "key", "eph", "commit", "quota"))
        if hello["v"] != VERSION or isinstance(hello["v"], bool):
            raise DecodeError("unsupported pairing version %r" % (hello["v"],))
        key = field(hello, "key", 32)
        eph = field(hello, "eph", 32)
        commit = field(hello, "commit", 32)
        quota = field(hello, "quota")
        if caller_key is not None and not crypto.equal(key, caller_key):
            raise AuthError("pairing hello names another key than the caller's")
        own = crypto.dh_keypair()
        nonce = crypto.random(_NONCE_LEN)
        pub = crypto.sign_public(self._seed)
        h2 = _hash(_hash(_LABEL, cbor.dumps(hello)),
                   cbor.dumps([pub, own[1], nonce, self._quota]))
        self._state = (key, crypto.dh(own[0], eph), commit, h2, quota)
        self.peer_key = key
        return {"key": pub, "eph": own[1], "nonce": nonce, "quota": self._quota,
                "sig": crypto.sign(self._seed, _RESP_SIG + h2)}

    def finish(self, confirm):
        if self._state is None:
            raise PairingError(_ORDER)
        key, dh, commit, h2, quota = self._state
        self._state = None  # single use: a bad confirm ends this exchange
        _only(confirm, ("nonce", "sig"))
        nonce = field(confirm, "nonce", _NONCE_LEN)
        sig = field(confirm, "sig", 64)
        if not crypto.equal(_hash(nonce), commit):
            raise AuthError("initiator's nonce does not match its commitment")
        h3 = _hash(h2, nonce)
        if not crypto.verify(key, _INIT_SIG + h3, sig):
            raise AuthError("initiator's pairing signature does not verify")
        secret, mac_key = _keys(dh, h3)
        done = {"mac": crypto.hmac_sha256(mac_key, _DONE + h3)[:_MAC_LEN]}
        return _result(key, secret, h3, self._quota, quota), done

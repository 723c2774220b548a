# Bookkeepers (DESIGN §7): an organization's books kept by N hosts instead of one. Their inputs
# are ordered by an etcd cluster (etcdlog.py); every bookkeeper replays the ordered inputs
# deterministically into its own SQLite books (the same code as a one-host organization:
# org.py, pool.py, settle.py), signs each epoch's record with its own key and publishes the
# signature; an epoch is final when a quorum (a majority of N, stated in the organization's
# signed set record) signed the same record. Proof bundles then carry the quorum's signatures
# and the set record, and a board checks k of n (leither.smtverify.check_bundle).
#
#   set record  {type: bookkeepers, org, version, keys: [32-byte Ed25519 keys], names, quorum,
#                etcd: [endpoints], time}                              signed by the org key
#   genesis     {type: genesis, org, org_key, name, created_ms, founder (application), books}
#   log entry   {time, inputs: [[kind, bytes], ...]}   kinds: application, approval, receipt,
#                tx, contract, credit, books, close — each input signed by its author
#   close       {type: close, org, epoch, until, time, by, by_key}    signed by a supervisor
#   contract    {type: contract, org, source, time, by, by_key}       signed by a supervisor
#
# Determinism: everything an epoch depends on comes from the log (times are the entry's or the
# input's own, an epoch record's "time" is its end), so honest bookkeepers sign identical bytes.
# An input that fails is rejected the same way by every bookkeeper (a SAVEPOINT undoes it), and
# each entry is applied in one SQLite transaction together with the log position: a bookkeeper
# killed at any instant resumes at the next entry; a replayed or duplicated input is refused by
# the same rules as on one host (pool IDs, nonces, spent income IDs) and etcd refuses to
# append identical entry bytes twice.
"""Bookkeepers on etcd: replay the ordered inputs, sign epochs, reach a quorum."""
# The records and the ways into the log are in books_records.py (names re-exported here).

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from leither import cbor, crypto
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError, LeitherError
from leither_host.errors import CliError
from leither_host.ledger import credit, pool, settle
from leither_host.ledger.books_records import (  # re-exported: bk.make_close(...) etc.
    BOOKS,
    CLOSE,
    DEPLOY,
    KINDS,
    PREFIX,
    _by_supervisor,
    entry,
    genesis,
    log_for,
    make_books,
    make_close,
    make_deploy,
    members_of,
    open_books,
    publish_genesis,
    quorum_of,
    set_bookkeepers,
    submit,
)
from leither_host.ledger.etcdlog import EtcdLog, LogUnavailable
from leither_host.ledger.records import (
    check_signature,
    decode_record,
    key_id,
)

READ_BATCH = 200  # log entries read per request
REPORT_EVERY_S = 10.0  # an idle bookkeeper's status in etcd is refreshed this often


# -- a bookkeeper -------------------------------------------------------------------------------

class Bookkeeper:
    """One bookkeeper's books (a directory like an organization's, without its key)."""

    def __init__(self, directory: Path, seed: bytes, log: EtcdLog) -> None:
        self.dir = Path(directory)
        self.seed = seed
        self.public = crypto.sign_public(seed)
        self.id = key_id(self.public)
        self.log = log
        self.org: Any = None
        self.rejected: list[dict[str, Any]] = []  # this run's rejected inputs, for the operator
        self._settled = False
        self._reported: dict[str, Any] = {}
        self._reported_at = 0.0

    def open(self) -> Any:
        """The books, made from the genesis in etcd on first use."""
        from leither_host.ledger.org import Organization

        if self.org is not None:
            return self.org
        if not (self.dir / "ledger.sqlite").exists():
            data = self.log.get(self.log.key("genesis"))
            if data is None:
                raise LogUnavailable("no genesis in etcd yet: the organization's supervisors "
                                     "publish it (leither org bookkeepers add … --etcd)")
            g = cbor.loads(data)
            books = open_books(g["books"], g["org_key"])
            if self.public not in books["keys"]:
                raise AuthError(f"{self.id} is not one of {g['name']}'s bookkeepers")
            tmp = self.dir.with_name(self.dir.name + ".new")
            if tmp.exists():  # a half-made replica of an earlier, killed start
                import shutil

                shutil.rmtree(tmp)
            Organization.create_replica(tmp, g["name"], g["org_key"], g["created_ms"],
                                        g["founder"], g["books"]).close()
            tmp.rename(self.dir)
        self.org = Organization(self.dir)
        return self.org

    def close(self) -> None:
        if self.org is not None:
            self.org.close()
            self.org = None

    def applied(self) -> int:
        return int(self.open().db.get_meta("log_seq", 0))

    def index(self, version: int | None = None) -> int:
        books = self.open().books(version)
        return list(books["keys"]).index(self.public) if self.public in books["keys"] else -1

    # -- replay ---------------------------------------------------------------------------

    def step(self, limit: int = READ_BATCH) -> int:
        """Apply the log entries not applied yet (up to limit), sign and publish what they
        settled, collect quorums. Returns how many entries were applied."""
        org = self.open()
        entries = self.log.read(self.applied(), limit)
        i = 0
        while i < len(entries):
            # Consecutive entries share one SQLite transaction (one fsync, not one each), up
            # to the first that settles an epoch: that one is committed before it is published.
            with org.db.transaction():
                while i < len(entries):
                    n, data = entries[i]
                    i += 1
                    if self.apply_entry(n, data):
                        break
        done = len(entries)
        self.publish()
        self.finalize()
        self.report()
        return done

    def apply_entry(self, n: int, data: bytes) -> bool:
        """Apply one log entry (its own transaction, or a savepoint in the caller's); True if
        it settled an epoch."""
        org = self.open()
        self._settled = False
        with org.db.transaction():
            try:
                body = cbor.loads(data, max_len=1 << 26, max_items=1 << 20, max_total=1 << 28)
                when, inputs = body["time"], body["inputs"]
                if type(when) is not int or type(inputs) is not list:
                    raise DecodeError("malformed log entry")
            except (DecodeError, KeyError, TypeError) as err:
                self._reject(n, "entry", str(err))
                inputs, when = [], 0
            for i, item in enumerate(inputs):
                try:
                    with org.db.transaction():  # a savepoint: a failed input leaves nothing
                        kind, payload = item
                        self._apply(kind, bytes(payload), when)
                except (LeitherError, CliError, ValueError, TypeError, KeyError) as err:
                    self._reject(n, f"input {i}", str(err))
            org.db.set_meta("log_seq", n)
        return self._settled

    def _reject(self, n: int, what: str, reason: str) -> None:
        self.rejected.append({"entry": n, "what": what, "reason": reason})
        self.org.db.conn.execute("INSERT INTO rejections VALUES (NULL, 'log', ?, ?)",
                                 (f"{n}:{what}", reason))

    def _apply(self, kind: str, data: bytes, when: int) -> None:
        org = self.org
        if kind == "application":
            org.submit(data)
        elif kind == "approval":
            org.admit_approval(data)
        elif kind == "receipt":
            got = pool.import_receipts(org.db, [data], now_ms=when, parallel=False)
            if got["rejected"]:
                raise DecodeError(got["rejected"][0]["reason"])
        elif kind == "tx":
            pool.add_transaction(org.db, data, org.id, {}, now_ms=when, check=False)
        elif kind == "credit":
            credit.store_grant(org.db, data, org.id)
        elif kind == "contract":
            body = _by_supervisor(org, data, DEPLOY, "contract", {"source": str, "time": int})
            pool.deploy_contract(org.db, body["source"], {m.id for m in org.members()},
                                 now_ms=body["time"])
        elif kind == "books":
            new = open_books(data, org.public)
            if new["version"] != org.books_version() + 1:
                raise DecodeError(f"bookkeeper set v{new['version']} does not follow "
                                  f"v{org.books_version()}")
            org.set_books(data, new["version"])
        elif kind == "close":
            body = _by_supervisor(org, data, CLOSE, "close", {"epoch": int, "until": int,
                                                             "time": int})
            if body["until"] > body["time"]:
                raise DecodeError(f"close of epoch {body['epoch']} ends at {body['until']}, "
                                  f"after it was signed ({body['time']})")
            last = org.db.last_epoch()
            number = (last["epoch"] + 1) if last else 1
            if body["epoch"] != number:
                raise DecodeError(f"close of epoch {body['epoch']}, the next is {number}")
            self.settle(body["until"])
            self._settled = True
        else:
            raise DecodeError(f"unknown input kind {kind!r}")

    def settle(self, until: int) -> dict[str, Any]:
        """Settle the next epoch, signed with this bookkeeper's key."""
        return settle.run_epoch(self.org, end_ms=until, now_ms=until, signer=self.seed)

    # -- signatures and quorum -----------------------------------------------------------

    def publish(self) -> None:
        """Put this bookkeeper's signed records in etcd (again after a crash)."""
        org = self.org
        last = org.db.last_epoch()
        sent = int(org.db.get_meta("sig_sent", 0))
        top = last["epoch"] if last else 0
        for number in range(sent + 1, top + 1):
            row = org.db.epoch(number)
            record = decode_record(bytes(row["record"]))
            if "sigs" in record:  # already final: publish our own signature from it
                own = {k: v for k, v in record.items() if k != "sigs"}
                mine = [s for i, s in record["sigs"] if i == self.index(record["books"])]
                if not mine:
                    continue
                own["sig"] = mine[0]
                data = bytes(cbor.dumps(own))
            else:
                data = bytes(row["record"])
            self.log.put(self.log.key("sig", "%012d" % number, self.id), data)
            with org.db.transaction():
                org.db.set_meta("sig_sent", number)

    def report(self) -> None:
        """This bookkeeper's progress, for `leither books status` (lag, epochs, agreement)."""
        org = self.org
        last = org.db.last_epoch()
        top = last["epoch"] if last else 0
        status = {"seq": self.applied(), "epoch": top,
                  "root": bytes(last["root"]) if last else settle.EMPTY_ROOT,
                  "final": int(org.db.get_meta("final_epoch", 0))}
        now = time.monotonic()
        if status == self._reported and now - self._reported_at < REPORT_EVERY_S:
            return  # an idle bookkeeper writes to etcd once in a while, not at every poll
        self.log.put(self.log.key("status", self.id),
                     bytes(cbor.dumps(dict(status, time=time_ms()))))
        self._reported, self._reported_at = status, now

    def votes(self, number: int, version: int | None = None) -> dict[str, Any]:
        """What the bookkeepers signed for an epoch: {"groups": {digest: [(index, record)]},
        "invalid": [...]}; a record counts once per bookkeeper of the set version that signs
        the epoch, checked against its key."""
        books = self.org.books(version)
        keys = list(books["keys"])
        groups: dict[bytes, list[tuple[int, dict[str, Any]]]] = {}
        invalid = []
        for key, value in self.log.get_prefix(self.log.key("sig", "%012d" % number) + b"/"):
            who = key.rsplit(b"/", 1)[1].decode()
            try:
                body = decode_record(value)
                index = [key_id(k) for k in keys].index(who)
                check_signature(body, settle.EPOCH, keys[index])
            except (LeitherError, ValueError) as err:
                invalid.append({"bookkeeper": who, "reason": str(err)})
                continue
            unsigned = {k: v for k, v in body.items() if not k.startswith("sig")}
            digest = hashlib.sha256(cbor.dumps(unsigned)).digest()
            groups.setdefault(digest, []).append((index, body))
        return {"groups": groups, "invalid": invalid, "quorum": books["quorum"]}

    def finalize(self) -> None:
        """Replace own records by quorum records where a quorum signed the same bytes; a
        quorum on other bytes than ours means our books are wrong: stop and say so."""
        org = self.org
        last = org.db.last_epoch()
        final = int(org.db.get_meta("final_epoch", 0))
        for number in range(final + 1, (last["epoch"] if last else 0) + 1):
            mine = decode_record(bytes(org.db.epoch(number)["record"]))
            unsigned = {k: v for k, v in mine.items() if not k.startswith("sig")}
            digest = hashlib.sha256(cbor.dumps(unsigned)).digest()
            votes = self.votes(number, mine.get("books"))
            agreeing = votes["groups"].get(digest, [])
            if len(agreeing) < votes["quorum"]:
                for other, signers in votes["groups"].items():
                    if other != digest and len(signers) >= votes["quorum"]:
                        raise settle.SettlementError(
                            f"epoch {number}: a quorum signed root "
                            f"{signers[0][1]['root'].hex()[:16]}…, these books have "
                            f"{mine['root'].hex()[:16]}…: rebuild them from the log")
                return  # not final yet
            final_record = dict(unsigned)
            final_record["sigs"] = sorted([i, body["sig"]] for i, body in agreeing)
            with org.db.transaction() as conn:
                conn.execute("UPDATE epochs SET record=? WHERE epoch=?",
                             (bytes(cbor.dumps(final_record)), number))
                org.db.set_meta("final_epoch", number)

    def serve(self, stop_after: float | None = None, poll_s: float = 0.05) -> None:
        """The bookkeeper's loop: step while there is work, poll when there is none; keep
        going through etcd outages (the log only stalls)."""
        deadline = time.monotonic() + stop_after if stop_after is not None else None
        while deadline is None or time.monotonic() < deadline:
            try:
                if self.step() == 0:
                    time.sleep(poll_s)
            except LogUnavailable:
                time.sleep(max(poll_s, 0.5))


# -- looking at the bookkeepers -----------------------------------------------------------------

def status(log: EtcdLog, books: dict[str, Any]) -> dict[str, Any]:
    """Each bookkeeper's progress (from etcd), the latest epoch a quorum agreed on, and every
    bookkeeper whose signed record differs from a quorum's (with the evidence)."""
    head = log.head()
    rows = []
    for name, key in zip(books["names"], books["keys"]):
        found = log.get(log.key("status", key_id(key)))
        st: dict[str, Any] = cbor.loads(found) if found else {
            "seq": 0, "epoch": 0, "root": b"", "final": 0, "time": 0}
        rows.append({"name": name, "id": key_id(key), "seq": st["seq"], "lag": head - st["seq"],
                     "epoch": st["epoch"], "root": bytes(st["root"]).hex(),
                     "final": st["final"]})
    top = max([r["epoch"] for r in rows] + [0])
    epochs = []
    dissent = []
    for number in range(max(1, top - 9), top + 1):
        groups: dict[bytes, list[tuple[str, dict[str, Any], bytes]]] = {}
        for key, value in log.get_prefix(log.key("sig", "%012d" % number) + b"/"):
            who = key.rsplit(b"/", 1)[1].decode()
            body = decode_record(value)
            ids_ = [key_id(k) for k in books["keys"]]
            if who not in ids_:
                continue
            try:
                check_signature(body, settle.EPOCH, books["keys"][ids_.index(who)])
            except AuthError:
                continue
            unsigned = {k: v for k, v in body.items() if not k.startswith("sig")}
            groups.setdefault(hashlib.sha256(cbor.dumps(unsigned)).digest(), []).append(
                (who, body, value))
        winner = next((g for g in groups.values() if len(g) >= books["quorum"]), None)
        epochs.append({"epoch": number, "final": winner is not None,
                       "root": winner[0][1]["root"].hex() if winner else None,
                       "signed": sum(len(g) for g in groups.values())})
        if winner is not None:
            for group in groups.values():
                if group is winner:
                    continue
                for who, body, value in group:
                    dissent.append({"epoch": number, "bookkeeper": who,
                                    "root": body["root"].hex(), "quorum_root":
                                    winner[0][1]["root"].hex(), "inputs": body["inputs"].hex(),
                                    "quorum_inputs": winner[0][1]["inputs"].hex(),
                                    "record": value.hex()})
    return {"head": head, "bookkeepers": rows, "epochs": epochs, "dissent": dissent,
            "quorum": books["quorum"], "agree": not dissent}


__all__ = ["BOOKS", "CLOSE", "DEPLOY", "KINDS", "PREFIX", "Bookkeeper", "EtcdLog",
           "LogUnavailable", "entry", "genesis", "log_for", "make_books", "make_close",
           "make_deploy", "members_of", "open_books", "publish_genesis", "quorum_of",
           "set_bookkeepers", "status", "submit"]

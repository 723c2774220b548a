# Organizations (DESIGN §7): a key pair (its ID), members with roles admitted by a signed
# application and a supervisor's signed approval, and the member set as a Merkle tree
# (members.py) whose versions are numbered so that anyone can follow them.
#
#   application  {type, org, member, key, role, name, time}                 signed by the member
#   approval     {type, org, application (SHA-256 of it), member, role, time, by, by_key}
#                                                                           signed by a supervisor
#   member set   {type, org, org_key, version, prev (SHA-256 of the previous record), time,
#                 root (of the member tree), count}                         signed by the org key
#                (a constant ~200 bytes: one member is proven by a tree path, not by a list)
#
# The founder is the first supervisor; the organization's own ID is also an account in the
# ledger (the treasury, where contract remainders and unvested tokens go).
"""Organization keys, membership and the signed member list."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Self

from leither import cbor, ids
from leither.compat import time_ms
from leither.errors import AuthError, DecodeError
from leither_host.errors import CliError
from leither_host.ledger import contract as contract_mod
from leither_host.ledger import members as members_mod
from leither_host.ledger.db import LedgerDB
from leither_host.ledger.records import (
    check_signature,
    decode_record,
    key_id,
    load_or_make_key,
    require,
    sign_record,
)

APPLICATION = b"leither-org-application/1"
APPROVAL = b"leither-org-approval/1"
MEMBER_LIST = b"leither-org-members/1"
ROLES = contract_mod.ROLES


def make_application(seed: bytes, org_id: str, role: str = "member", name: str = "",
                     now_ms: int | None = None) -> bytes:
    """A member's signed request to join org_id with a role."""
    from leither import crypto

    if role not in ROLES:
        raise CliError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    public = crypto.sign_public(seed)
    body = {"type": "application", "org": org_id, "member": key_id(public), "key": public,
            "role": role, "name": name[:64], "time": now_ms if now_ms is not None else time_ms()}
    return sign_record(seed, APPLICATION, body)


def open_application(data: bytes) -> dict[str, Any]:
    """A verified application (DecodeError if malformed, AuthError if forged)."""
    body = decode_record(data)
    require(body, {"org": str, "member": str, "key": bytes, "role": str, "name": str,
                   "time": int})
    if body.get("type") != "application" or body["role"] not in ROLES:
        raise DecodeError("not an application with a known role")
    if key_id(body["key"]) != body["member"]:
        raise AuthError("application: member ID is not the ID of its key")
    check_signature(body, APPLICATION, body["key"])
    return body


def make_approval(supervisor_seed: bytes, org_id: str, application: bytes, role: str,
                  now_ms: int) -> bytes:
    """A supervisor's signed admission of one application, with the role granted."""
    from leither import crypto

    if role not in ROLES:
        raise CliError(f"role must be one of {', '.join(ROLES)}")
    app = open_application(application)
    by_key = crypto.sign_public(supervisor_seed)
    return sign_record(supervisor_seed, APPROVAL, {
        "type": "approval", "org": org_id, "application": hashlib.sha256(application).digest(),
        "member": app["member"], "role": role, "time": now_ms, "by": key_id(by_key),
        "by_key": by_key})


def open_approval(data: bytes) -> dict[str, Any]:
    body = decode_record(data)
    require(body, {"org": str, "application": bytes, "member": str, "role": str, "time": int,
                   "by": str, "by_key": bytes})
    if body.get("type") != "approval" or body["role"] not in ROLES:
        raise DecodeError("not an approval with a known role")
    if key_id(body["by_key"]) != body["by"]:
        raise AuthError("approval: supervisor ID is not the ID of its key")
    check_signature(body, APPROVAL, body["by_key"])
    return body


class Organization:
    """One organization's state, in its directory (org.key + ledger.sqlite)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        if not (self.dir / "ledger.sqlite").exists():
            raise CliError(f"no organization at {self.dir}")
        self.db = LedgerDB(self.dir / "ledger.sqlite")
        public = self.db.get_meta("org_key")
        if public is None:
            raise CliError(f"{self.dir}: organization was never completely created")
        self.public: bytes = bytes(public)
        self.name: str = str(self.db.get_meta("name"))
        self.id: str = key_id(self.public)
        self.raw: bytes = ids.raw_id(self.public)  # the treasury account's ledger key
        if members_mod.latest(self.db) is None and self.db.conn.execute(
                "SELECT 1 FROM members LIMIT 1").fetchone():
            self._grow_member_tree()

    def _grow_member_tree(self) -> None:
        """Books from before the member tree: its first version from the members they hold
        (their earlier epochs keep replaying from the signed lists they were settled with)."""
        changes: dict[bytes, tuple[int, int] | None] = {
            bytes(raw): members_mod.leaf_value(role, joined) for raw, role, joined in
            self.db.conn.execute("SELECT raw, role, joined_ms FROM members")}
        seed = load_or_make_key(self.dir / "org.key", create=False)[0] \
            if (self.dir / "org.key").exists() else None
        with self.db.transaction():
            self._publish_member_list(seed, time_ms(), changes)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def create(cls, directory: Path, name: str, founder_seed: bytes,
               now_ms: int | None = None) -> Organization:
        from leither import crypto

        directory = Path(directory)
        if (directory / "ledger.sqlite").exists():
            raise CliError(f"organization {name!r} already exists at {directory}")
        now = now_ms if now_ms is not None else time_ms()
        seed, public = load_or_make_key(directory / "org.key")
        db = LedgerDB(directory / "ledger.sqlite")
        with db.transaction():
            db.set_meta("name", name)
            db.set_meta("created_ms", now)
        founder = crypto.sign_public(founder_seed)
        app = make_application(founder_seed, key_id(public), "supervisor", "founder", now)
        with db.transaction():
            db.set_meta("org_key", public)
        db.close()
        org = cls(directory)
        with org.db.transaction():
            change = org._admit(open_application(app), app, b"", now)
            org._publish_member_list(seed, now, change)
            org.db.set_meta("founder_application", app)  # for a bookkeepers' genesis
        assert org.member(key_id(founder)) is not None
        return org

    def seed(self) -> bytes:
        """The organization's private key (only the supervisors' host has it)."""
        path = self.dir / "org.key"
        if not path.exists():
            raise CliError(f"this host does not hold {self.name}'s key ({path})")
        seed, public = load_or_make_key(path, create=False)
        if public != self.public:
            raise CliError(f"{path} is not the key of organization {self.id}")
        return seed

    # -- members -------------------------------------------------------------------------------

    def member_rows(self) -> list[dict[str, Any]]:
        cols = ("id", "raw", "pubkey", "role", "name", "joined_ms")
        return [dict(zip(cols, r)) for r in self.db.conn.execute(
            f"SELECT {','.join(cols)} FROM members ORDER BY raw")]

    def member(self, member_id: str) -> dict[str, Any] | None:
        cols = ("id", "raw", "pubkey", "role", "name", "joined_ms")
        row = self.db.conn.execute(f"SELECT {','.join(cols)} FROM members WHERE id=?",
                                   (member_id,)).fetchone()
        return dict(zip(cols, row)) if row else None

    def members(self) -> list[contract_mod.Member]:
        return [contract_mod.Member(r[0], bytes(r[1]), r[2], r[3]) for r in self.db.conn.execute(
            "SELECT id, raw, role, joined_ms FROM members ORDER BY raw")]

    def supervisors(self) -> dict[str, bytes]:
        return {r[0]: bytes(r[1]) for r in self.db.conn.execute(
            "SELECT id, pubkey FROM members WHERE role='supervisor'")}

    def submit(self, data: bytes) -> str:
        """Queue a verified application; returns its ID (hex of its SHA-256)."""
        app = open_application(data)
        if app["org"] != self.id:
            raise CliError(f"application is for organization {app['org']}, not {self.id}")
        if self.member(app["member"]):
            raise CliError(f"{app['member']} is already a member")
        app_id = hashlib.sha256(data).hexdigest()
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO applications VALUES (?,?,?,?)",
                         (app_id, app["member"], data, "pending"))
        return app_id

    def submit_many(self, datas: list[bytes]) -> list[str]:
        """Queue many verified applications in one transaction."""
        out = []
        members = {r["id"] for r in self.member_rows()}
        with self.db.transaction() as conn:
            for data in datas:
                app = open_application(data)
                if app["org"] != self.id:
                    raise CliError(f"application is for organization {app['org']}")
                if app["member"] in members:
                    raise CliError(f"{app['member']} is already a member")
                app_id = hashlib.sha256(data).hexdigest()
                conn.execute("INSERT OR IGNORE INTO applications VALUES (?,?,?,?)",
                             (app_id, app["member"], data, "pending"))
                out.append(app_id)
        return out

    def pending(self) -> list[dict[str, Any]]:
        out = []
        for app_id, data in self.db.conn.execute(
                "SELECT id, record FROM applications WHERE status='pending' ORDER BY id"):
            body = open_application(bytes(data))
            out.append({"application": app_id, "member": body["member"], "role": body["role"],
                        "name": body["name"], "time": body["time"]})
        return out

    def find_application(self, ref: str) -> str:
        """A pending application's ID from a prefix of it, the applicant's member ID or the
        name the applicant gave."""
        pending = self.pending()
        found = [p for p in pending if p["member"] == ref] or \
            [p for p in pending if p["name"] == ref] or \
            [p for p in pending if p["application"].startswith(ref)]
        if not found:
            raise CliError(f"no pending application matches {ref!r}")
        if len(found) > 1:
            raise CliError(f"{ref!r} matches {len(found)} applications: give more of the ID")
        return str(found[0]["application"])

    def approve(self, app_id: str, supervisor_seed: bytes, role: str | None = None,
                now_ms: int | None = None) -> bytes:
        """A supervisor admits an applicant; the org key signs the new member list."""
        from leither import crypto

        now = now_ms if now_ms is not None else time_ms()
        row = self.db.conn.execute("SELECT record, status FROM applications WHERE id=?",
                                   (app_id,)).fetchone()
        if row is None or row[1] != "pending":
            raise CliError(f"no pending application {app_id}")
        data = bytes(row[0])
        app = open_application(data)
        self._not_member_yet(app["member"])
        by_key = crypto.sign_public(supervisor_seed)
        by = key_id(by_key)
        if by not in self.supervisors():
            raise AuthError(f"{by} is not a supervisor of {self.name}: it cannot approve")
        granted = role or app["role"]
        approval = make_approval(supervisor_seed, self.id, data, granted, now)
        org_seed = self.seed()
        with self.db.transaction() as conn:
            app["role"] = granted
            change = self._admit(app, data, approval, now)
            conn.execute("UPDATE applications SET status='approved' WHERE id=?", (app_id,))
            self._publish_member_list(org_seed, now, change)
        return approval

    def approve_many(self, app_ids: list[str], supervisor_seed: bytes,
                     now_ms: int | None = None) -> int:
        """Admit many applicants in one transaction and one new member list (a founding
        cohort, an import); each still gets its own signed approval."""
        from leither import crypto

        now = now_ms if now_ms is not None else time_ms()
        by_key = crypto.sign_public(supervisor_seed)
        by = key_id(by_key)
        if by not in self.supervisors():
            raise AuthError(f"{by} is not a supervisor of {self.name}: it cannot approve")
        org_seed = self.seed()
        changes: dict[bytes, tuple[int, int] | None] = {}
        with self.db.transaction() as conn:
            for app_id in app_ids:
                row = conn.execute("SELECT record, status FROM applications WHERE id=?",
                                   (app_id,)).fetchone()
                if row is None or row[1] != "pending":
                    raise CliError(f"no pending application {app_id}")
                data = bytes(row[0])
                app = open_application(data)
                self._not_member_yet(app["member"])
                approval = make_approval(supervisor_seed, self.id, data, app["role"], now)
                changes.update(self._admit(app, data, approval, now))
                conn.execute("UPDATE applications SET status='approved' WHERE id=?", (app_id,))
            self._publish_member_list(org_seed, now, changes)
        return len(app_ids)

    def admit_approval(self, approval: bytes) -> str:
        """Admit by a supervisor's approval record (a bookkeeper replaying the log): the
        application must be queued, its applicant not a member, the signer a supervisor now.
        The join time is the approval's; the new member set version is not org-signed (the
        bookkeepers' epoch signatures cover its root)."""
        body = open_approval(approval)
        if body["org"] != self.id:
            raise CliError(f"approval is for organization {body['org']}, not {self.id}")
        if self.supervisors().get(body["by"]) != body["by_key"]:
            raise AuthError(f"{body['by']} is not a supervisor of {self.name}: it cannot approve")
        app_id = body["application"].hex()
        row = self.db.conn.execute("SELECT record, status FROM applications WHERE id=?",
                                   (app_id,)).fetchone()
        if row is None or row[1] != "pending":
            raise CliError(f"no pending application {app_id}")
        app = open_application(bytes(row[0]))
        if app["member"] != body["member"]:
            raise AuthError("approval names another member than its application")
        self._not_member_yet(app["member"])
        app["role"] = body["role"]
        with self.db.transaction() as conn:
            change = self._admit(app, bytes(row[0]), approval, body["time"])
            conn.execute("UPDATE applications SET status='approved' WHERE id=?", (app_id,))
            self._publish_member_list(None, body["time"], change)
        return str(app["member"])

    @classmethod
    def create_replica(cls, directory: Path, name: str, org_key: bytes, created_ms: int,
                       founder_application: bytes, books: bytes) -> Organization:
        """A bookkeeper's own books of an organization, from its genesis: the same starting
        state as the founder's (Organization.create), without the organization's key."""
        directory = Path(directory)
        if (directory / "ledger.sqlite").exists():
            raise CliError(f"books of {name!r} already exist at {directory}")
        db = LedgerDB(directory / "ledger.sqlite")
        with db.transaction():
            db.set_meta("name", name)
            db.set_meta("created_ms", created_ms)
            db.set_meta("books", books)
            db.set_meta(f"books_v{cbor.loads(books)['version']}", books)
            db.set_meta("org_key", org_key)
        db.close()
        org = cls(directory)
        founder = open_application(founder_application)
        if founder["org"] != org.id or founder["role"] != "supervisor":
            raise AuthError("genesis: the founder's application is not a supervisor's of this "
                            "organization")
        with org.db.transaction():
            change = org._admit(founder, founder_application, b"", created_ms)
            org._publish_member_list(None, created_ms, change)
        return org

    def books(self, version: int | None = None) -> dict[str, Any] | None:
        """The opened bookkeeper set record (None: the latest version), or None for a
        one-host organization."""
        from leither_host.ledger import bookkeepers

        data = self.books_record(version)
        return bookkeepers.open_books(data, self.public) if data else None

    def books_record(self, version: int | None = None) -> bytes | None:
        data = self.db.get_meta("books" if version is None else f"books_v{version}")
        return bytes(data) if data is not None else None

    def set_books(self, record: bytes, version: int) -> None:
        """Keep a bookkeeper set record (inside a transaction): every version stays readable,
        since each epoch record names the one that signs it."""
        self.db.set_meta("books", record)
        self.db.set_meta(f"books_v{version}", record)

    def books_version(self) -> int:
        found = self.books()
        return int(found["version"]) if found else 0

    def _not_member_yet(self, member_id: str) -> None:
        """An application from a member (queued before it was admitted) must not replace its
        record: role, join time and so its vesting clock. A role change is its own act."""
        found = self.member(member_id)
        if found is not None:
            raise CliError(f"{member_id} is already a member ({found['role']} since "
                           f"{found['joined_ms']}): its application cannot be approved again; "
                           f"to change its role use `leither org role {member_id} ROLE`")

    def set_role(self, member_id: str, role: str, supervisor_seed: bytes,
                 now_ms: int | None = None) -> dict[str, Any]:
        """A supervisor changes a member's role; its join time (vesting clock) is kept."""
        from leither import crypto

        now = now_ms if now_ms is not None else time_ms()
        if role not in ROLES:
            raise CliError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        by = key_id(crypto.sign_public(supervisor_seed))
        if by not in self.supervisors():
            raise AuthError(f"{by} is not a supervisor of {self.name}: it cannot change roles")
        found = self.member(member_id)
        if found is None:
            raise CliError(f"{member_id} is not a member of {self.name}")
        if found["role"] == role:
            raise CliError(f"{member_id} already has role {role}")
        if found["role"] == "supervisor" and len(self.supervisors()) == 1:
            raise CliError(f"{member_id} is the last supervisor: name another one first")
        org_seed = self.seed()
        with self.db.transaction() as conn:
            conn.execute("UPDATE members SET role=? WHERE id=?", (role, member_id))
            self._publish_member_list(org_seed, now, {bytes(found["raw"]): members_mod.leaf_value(
                role, found["joined_ms"])})
        return {"member": member_id, "role": role, "was": found["role"],
                "joined_ms": found["joined_ms"]}

    def _admit(self, app: dict[str, Any], data: bytes, approval: bytes, now: int
               ) -> dict[bytes, tuple[int, int] | None]:
        """Store a new member's row; returns its change to the member tree."""
        raw = ids.id_raw(app["member"])
        self.db.conn.execute(
            "INSERT INTO members VALUES (?,?,?,?,?,?,?,?)",
            (app["member"], raw, app["key"], app["role"], app["name"], now, data, approval))
        return {raw: members_mod.leaf_value(app["role"], now)}

    def _publish_member_list(self, org_seed: bytes | None, now: int,
                             changes: dict[bytes, tuple[int, int] | None]) -> bytes:
        """The next version of the member set: its tree, and its record (signed by the org
        key when this host holds it; a bookkeeper's epoch signatures cover the root instead)."""
        published = members_mod.publish(self.db, changes)
        last = self.db.conn.execute(
            "SELECT record FROM member_lists ORDER BY version DESC LIMIT 1").fetchone()
        body = {"type": "members", "org": self.id, "org_key": self.public,
                "version": published["version"],
                "prev": hashlib.sha256(bytes(last[0])).digest() if last else b"", "time": now,
                "root": published["root"], "count": published["count"]}
        record = sign_record(org_seed, MEMBER_LIST, body) if org_seed is not None else \
            bytes(cbor.dumps(body))
        self.db.conn.execute("INSERT INTO member_lists VALUES (?,?)",
                             (published["version"], record))
        return record

    def member_list(self, version: int | None = None) -> bytes:
        """The record of a member set version (None: the latest)."""
        if version is None:
            row = self.db.conn.execute(
                "SELECT record FROM member_lists ORDER BY version DESC LIMIT 1").fetchone()
        else:
            row = self.db.conn.execute("SELECT record FROM member_lists WHERE version=?",
                                       (version,)).fetchone()
        if row is None:
            raise CliError(f"no member list version {version}")
        return bytes(row[0])

    def members_version(self) -> int:
        found = members_mod.latest(self.db)
        return int(found["version"]) if found else 0

    def prove_member(self, member_id: str, version: int | None = None) -> tuple[bytes, bytes]:
        """(member set record, proof of member_id's leaf or absence) at a version."""
        version = version if version is not None else self.members_version()
        return self.member_list(version), members_mod.prove(self.db, version,
                                                            ids.id_raw(member_id))


def open_member_list(data: bytes, org_key: bytes | None = None) -> dict[str, Any]:
    """A member set record verified against the org key (given, or the one it carries)."""
    body = decode_record(data)
    require(body, {"org": str, "org_key": bytes, "version": int, "time": int, "root": bytes,
                   "count": int})
    key = org_key or body["org_key"]
    if key_id(key) != body["org"]:
        raise AuthError("member list: org ID is not the ID of the org key")
    check_signature(body, MEMBER_LIST, key)
    return body


def check_member(listing: dict[str, Any], member_id: str, proof: bytes
                 ) -> tuple[str, int] | None:
    """(role, joined_ms) of member_id in an opened member set record, None if not a member."""
    return members_mod.check(listing["root"], ids.id_raw(member_id), proof)

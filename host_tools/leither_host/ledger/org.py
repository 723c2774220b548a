# Organizations (DESIGN §7): a key pair (its ID), members with roles admitted by a signed
# application and a supervisor's signed approval, and the member list as a record signed by the
# organization's key, numbered so that anyone can follow its versions.
#
#   application  {type, org, member, key, role, name, time}                 signed by the member
#   approval     {type, org, application (SHA-256 of it), member, role, time, by, by_key}
#                                                                           signed by a supervisor
#   member list  {type, org, org_key, version, prev (SHA-256 of the previous list), time,
#                 members: [{id, key, role, name, joined}] in ID order}     signed by the org key
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
            org._admit(open_application(app), app, b"", now)
            org._publish_member_list(seed, now)
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
        for row in self.member_rows():
            if row["id"] == member_id:
                return row
        return None

    def members(self) -> list[contract_mod.Member]:
        return [contract_mod.Member(r["id"], bytes(r["raw"]), r["role"], r["joined_ms"])
                for r in self.member_rows()]

    def supervisors(self) -> dict[str, bytes]:
        return {r["id"]: bytes(r["pubkey"]) for r in self.member_rows()
                if r["role"] == "supervisor"}

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
        if granted not in ROLES:
            raise CliError(f"role must be one of {', '.join(ROLES)}")
        approval = sign_record(supervisor_seed, APPROVAL, {
            "type": "approval", "org": self.id, "application": hashlib.sha256(data).digest(),
            "member": app["member"], "role": granted, "time": now, "by": by, "by_key": by_key})
        org_seed = self.seed()
        with self.db.transaction() as conn:
            app["role"] = granted
            self._admit(app, data, approval, now)
            conn.execute("UPDATE applications SET status='approved' WHERE id=?", (app_id,))
            self._publish_member_list(org_seed, now)
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
        with self.db.transaction() as conn:
            for app_id in app_ids:
                row = conn.execute("SELECT record, status FROM applications WHERE id=?",
                                   (app_id,)).fetchone()
                if row is None or row[1] != "pending":
                    raise CliError(f"no pending application {app_id}")
                data = bytes(row[0])
                app = open_application(data)
                self._not_member_yet(app["member"])
                approval = sign_record(supervisor_seed, APPROVAL, {
                    "type": "approval", "org": self.id,
                    "application": hashlib.sha256(data).digest(), "member": app["member"],
                    "role": app["role"], "time": now, "by": by, "by_key": by_key})
                self._admit(app, data, approval, now)
                conn.execute("UPDATE applications SET status='approved' WHERE id=?", (app_id,))
            self._publish_member_list(org_seed, now)
        return len(app_ids)

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
            self._publish_member_list(org_seed, now)
        return {"member": member_id, "role": role, "was": found["role"],
                "joined_ms": found["joined_ms"]}

    def _admit(self, app: dict[str, Any], data: bytes, approval: bytes, now: int) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO members VALUES (?,?,?,?,?,?,?,?)",
            (app["member"], ids.id_raw(app["member"]), app["key"], app["role"], app["name"],
             now, data, approval))

    def _publish_member_list(self, org_seed: bytes, now: int) -> None:
        last = self.db.conn.execute(
            "SELECT version, record FROM member_lists ORDER BY version DESC LIMIT 1").fetchone()
        version = (last[0] + 1) if last else 1
        prev = hashlib.sha256(bytes(last[1])).digest() if last else b""
        members = [{"id": r["id"], "key": bytes(r["pubkey"]), "role": r["role"],
                    "name": r["name"], "joined": r["joined_ms"]} for r in self.member_rows()]
        record = sign_record(org_seed, MEMBER_LIST, {
            "type": "members", "org": self.id, "org_key": self.public, "version": version,
            "prev": prev, "time": now, "members": members})
        self.db.conn.execute("INSERT INTO member_lists VALUES (?,?)", (version, record))

    def member_list(self, version: int | None = None) -> bytes:
        if version is None:
            row = self.db.conn.execute(
                "SELECT record FROM member_lists ORDER BY version DESC LIMIT 1").fetchone()
        else:
            row = self.db.conn.execute("SELECT record FROM member_lists WHERE version=?",
                                       (version,)).fetchone()
        if row is None:
            raise CliError(f"no member list version {version}")
        return bytes(row[0])


def open_member_list(data: bytes, org_key: bytes | None = None) -> dict[str, Any]:
    """A member list verified against the org key (given, or the one it carries)."""
    body = decode_record(data)
    require(body, {"org": str, "org_key": bytes, "version": int, "time": int, "members": list})
    key = org_key or body["org_key"]
    if key_id(key) != body["org"]:
        raise AuthError("member list: org ID is not the ID of the org key")
    check_signature(body, MEMBER_LIST, key)
    return body


def encode_members(members: list[dict[str, Any]]) -> bytes:
    return bytes(cbor.dumps(members))

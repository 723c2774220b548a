# Contracts: a declarative TOML file saying how each income event is split among an
# organization's members (format and examples in CONTRACTS.md). Parsing checks everything and
# names the first problem; running is a pure function of (contract, income, members, stakes,
# performance) using integer arithmetic only, with one remainder rule everywhere:
#
#   largest remainder — each recipient first gets floor(amount * weight / total_weight); the
#   units left over (fewer than the number of recipients) go one each to the recipients with the
#   largest discarded fractions, ties to the recipient listed first (shares in file order,
#   members in ascending raw-ID order).
#
# A part that has nobody to go to (an empty role, no stake, no receipts) and the unvested part
# of a vesting share go to the organization's own account (the treasury), so every unit of an
# income event lands somewhere: the split conserves tokens exactly.
"""Contract parsing, validation and the split of an income event."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leither import cbor, ids
from leither.errors import DecodeError

FORMAT = "leither-contract/1"
MILLION = 1_000_000
ROLES = ("supervisor", "member", "guest")
BASES = ("member", "role", "stake", "performance")
METRICS = ("stored", "served", "audits")  # byte-hours stored, bytes served, audits passed
GIB = 1 << 30  # bytes: credit prices are per GiB(-hour)
MAX_SHARES = 64  # a contract with more parts than this is a mistake, not a contract
MAX_CONTRACT = 64 * 1024  # bytes of TOML


class ContractError(DecodeError):
    """A contract is invalid; the message names the problem."""


@dataclass(frozen=True)
class Share:
    name: str
    millionths: int
    basis: str
    member: str = ""  # basis "member"
    role: str = ""  # basis "role" (required) or "stake"/"performance" (optional filter)
    weights: tuple[tuple[str, int], ...] = ()  # basis "performance": (metric, millionths)
    cliff_ms: int = 0
    vesting_ms: int = 0  # 0 = no vesting


@dataclass(frozen=True)
class Contract:
    name: str
    shares: tuple[Share, ...]
    reward_cap: int = 0  # tokens per epoch supervisors may mint as signed rewards (0 = none)
    price_stored: int = 0  # token units per GiB-hour, for credit lines
    price_served: int = 0  # token units per GiB served
    source: str = field(default="", compare=False)

    def canonical(self) -> dict[str, Any]:
        """The contract as a plain map: what is hashed, stored and shown."""
        shares = []
        for s in self.shares:
            item: dict[str, Any] = {"name": s.name, "millionths": s.millionths, "basis": s.basis}
            if s.member:
                item["member"] = s.member
            if s.role:
                item["role"] = s.role
            if s.weights:
                item["weights"] = dict(s.weights)
            if s.vesting_ms:
                item["vesting"] = {"cliff_ms": s.cliff_ms, "duration_ms": s.vesting_ms}
            shares.append(item)
        return {"format": FORMAT, "name": self.name, "share": shares,
                "rewards": {"max_per_epoch": self.reward_cap},
                "credit": {"price_stored": self.price_stored, "price_served": self.price_served}}

    def digest(self) -> bytes:
        return hashlib.sha256(cbor.dumps(self.canonical())).digest()


def _fail(msg: str) -> ContractError:
    return ContractError(f"contract: {msg}")


def _int(table: dict, key: str, where: str, default: int | None = None, low: int = 0,
         high: int = (1 << 63) - 1) -> int:
    if key not in table:
        if default is None:
            raise _fail(f"{where}: missing {key!r}")
        return default
    value = table[key]
    if type(value) is not int:
        raise _fail(f"{where}: {key!r} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise _fail(f"{where}: {key!r} = {value} is outside {low}..{high}")
    return value


def _only(table: dict, allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise _fail(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def parse(text: str) -> Contract:
    """A Contract from TOML text, or ContractError naming the first problem."""
    import tomllib

    if len(text.encode()) > MAX_CONTRACT:
        raise _fail(f"file over {MAX_CONTRACT} bytes")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _fail(f"not valid TOML: {err}") from None
    return from_map(doc, source=text)


def from_map(doc: dict, source: str = "") -> Contract:
    _only(doc, ("format", "name", "share", "rewards", "credit"), "top level")
    if doc.get("format") != FORMAT:
        raise _fail(f"format must be {FORMAT!r}, got {doc.get('format')!r}")
    name = doc.get("name")
    if type(name) is not str or not name or len(name) > 64:
        raise _fail("name must be a non-empty string of at most 64 characters")
    raw = doc.get("share")
    if type(raw) is not list or not raw:
        raise _fail("no [[share]] entries: an income event must go somewhere")
    if len(raw) > MAX_SHARES:
        raise _fail(f"{len(raw)} shares, at most {MAX_SHARES}")
    shares = []
    seen: set[str] = set()
    for n, item in enumerate(raw):
        if type(item) is not dict:
            raise _fail(f"share #{n + 1} is not a table")
        shares.append(_share(item, n))
        if shares[-1].name in seen:
            raise _fail(f"share name {shares[-1].name!r} used twice")
        seen.add(shares[-1].name)
    total = sum(s.millionths for s in shares)
    if total != MILLION:
        raise _fail(f"shares sum to {total} millionths, must be exactly {MILLION} "
                    f"({'missing' if total < MILLION else 'over by'} {abs(MILLION - total)})")
    rewards = doc.get("rewards", {})
    credit = doc.get("credit", {})
    if type(rewards) is not dict or type(credit) is not dict:
        raise _fail("[rewards] and [credit] must be tables")
    _only(rewards, ("max_per_epoch",), "[rewards]")
    _only(credit, ("price_stored", "price_served"), "[credit]")
    return Contract(name=name, shares=tuple(shares),
                    reward_cap=_int(rewards, "max_per_epoch", "[rewards]", 0),
                    price_stored=_int(credit, "price_stored", "[credit]", 0, high=1 << 40),
                    price_served=_int(credit, "price_served", "[credit]", 0, high=1 << 40),
                    source=source)


def _share(item: dict, n: int) -> Share:
    name = item.get("name", f"share{n + 1}")
    if type(name) is not str or not name:
        raise _fail(f"share #{n + 1}: name must be a non-empty string")
    where = f"share {name!r}"
    _only(item, ("name", "millionths", "basis", "member", "role", "weights", "vesting"), where)
    millionths = _int(item, "millionths", where, low=1, high=MILLION)
    basis = item.get("basis")
    if basis not in BASES:
        raise _fail(f"{where}: basis {basis!r} is not one of {', '.join(BASES)}")
    member = item.get("member", "")
    role = item.get("role", "")
    if basis == "member":
        if type(member) is not str:
            raise _fail(f"{where}: member must be a member ID")
        try:
            ids.id_raw(member)
        except DecodeError:
            raise _fail(f"{where}: member {member!r} is not a valid member ID") from None
    elif member:
        raise _fail(f"{where}: 'member' only goes with basis = \"member\"")
    if basis == "role" and not role:
        raise _fail(f"{where}: basis \"role\" needs role = one of {', '.join(ROLES)}")
    if role and role not in ROLES:
        raise _fail(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    if basis == "member" and role:
        raise _fail(f"{where}: 'role' does not go with basis = \"member\"")
    weights: tuple[tuple[str, int], ...] = ()
    if basis == "performance":
        raw = item.get("weights")
        if type(raw) is not dict or not raw:
            raise _fail(f"{where}: basis \"performance\" needs weights = "
                        f"{{ {' , '.join(m + ' = …' for m in METRICS)} }} in millionths")
        _only(raw, METRICS, f"{where} weights")
        weights = tuple((m, _int(raw, m, f"{where} weights", low=0, high=MILLION))
                        for m in METRICS if m in raw)
        total = sum(w for _, w in weights)
        if total != MILLION:
            raise _fail(f"{where}: weights sum to {total} millionths, must be exactly {MILLION}")
    elif "weights" in item:
        raise _fail(f"{where}: 'weights' only goes with basis = \"performance\"")
    cliff = duration = 0
    if "vesting" in item:
        vest = item["vesting"]
        if type(vest) is not dict:
            raise _fail(f"{where}: vesting must be a table {{ cliff_ms, duration_ms }}")
        _only(vest, ("cliff_ms", "duration_ms"), f"{where} vesting")
        duration = _int(vest, "duration_ms", f"{where} vesting", low=1)
        cliff = _int(vest, "cliff_ms", f"{where} vesting", 0)
        if cliff > duration:
            raise _fail(f"{where}: vesting cliff_ms {cliff} is after duration_ms {duration}")
    return Share(name=name, millionths=millionths, basis=basis, member=member, role=role,
                 weights=weights, cliff_ms=cliff, vesting_ms=duration)


# -- running -----------------------------------------------------------------------------------

def largest_remainder(amount: int, weights: Sequence[tuple[Any, int]]) -> list[tuple[Any, int]]:
    """Split amount by integer weights (listed in tie-break order); [] if all weights are 0."""
    total = sum(w for _, w in weights)
    if amount < 0 or total <= 0:
        return []
    out = []
    rems = []
    given = 0
    for i, (who, w) in enumerate(weights):
        q, r = divmod(amount * w, total)
        out.append([who, q])
        rems.append((-r, i))
        given += q
    rems.sort()
    for _, i in rems[:amount - given]:
        out[i][1] += 1
    return [(who, n) for who, n in out if n]


@dataclass
class Member:
    id: str
    raw: bytes
    role: str
    joined_ms: int


@dataclass
class Performance:
    stored: int = 0
    served: int = 0
    audits: int = 0  # audits passed
    audits_failed: int = 0

    def metric(self, name: str) -> int:
        return int(getattr(self, name))


def vested_millionths(share: Share, joined_ms: int, now_ms: int) -> int:
    if not share.vesting_ms:
        return MILLION
    age = now_ms - joined_ms
    if age < share.cliff_ms:
        return 0
    return min(MILLION, age * MILLION // share.vesting_ms)


def run(contract: Contract, amount: int, members: Sequence[Member], stakes: dict[bytes, int],
        performance: dict[bytes, Performance], treasury: bytes, now_ms: int
        ) -> tuple[dict[bytes, int], list[dict[str, Any]]]:
    """Split one income event. Returns (raw ID -> tokens, lines explaining each share)."""
    ordered = sorted(members, key=lambda m: m.raw)
    payout: dict[bytes, int] = {}
    lines: list[dict[str, Any]] = []

    def give(raw: bytes, n: int) -> None:
        if n:
            payout[raw] = payout.get(raw, 0) + n

    parts = dict(largest_remainder(amount, [(i, s.millionths)
                                            for i, s in enumerate(contract.shares)]))
    for i, share in enumerate(contract.shares):
        part = parts.get(i, 0)
        if not part:
            continue
        eligible = [m for m in ordered if not share.role or m.role == share.role]
        split: list[tuple[Any, int]]
        if share.basis == "member":
            split = [(m.raw, part) for m in ordered if m.id == share.member]
        elif share.basis == "role":
            split = largest_remainder(part, [(m.raw, 1) for m in eligible])
        elif share.basis == "stake":
            split = largest_remainder(part, [(m.raw, stakes.get(m.raw, 0)) for m in eligible])
        else:
            split = []
            subparts = largest_remainder(part, list(share.weights))
            for metric, sub in subparts:
                got = largest_remainder(sub, [
                    (m.raw, performance[m.raw].metric(metric) if m.raw in performance else 0)
                    for m in eligible])
                if not got:
                    give(treasury, sub)
                split.extend(got)
        if not split and share.basis != "performance":
            give(treasury, part)
            lines.append({"share": share.name, "amount": part, "to": "treasury (no recipient)"})
            continue
        by_member = {m.raw: m for m in ordered}
        unvested = 0
        for raw, n in split:
            member = by_member[raw]
            vested = n * vested_millionths(share, member.joined_ms, now_ms) // MILLION
            give(raw, vested)
            unvested += n - vested
        give(treasury, unvested)
        lines.append({"share": share.name, "amount": part, "recipients": len(split),
                      "unvested": unvested})
    if sum(payout.values()) != amount:  # the rules above conserve by construction
        raise ArithmeticError(f"contract split lost tokens: {sum(payout.values())} != {amount}")
    return payout, lines

# A small organization for ledger tests: a founder (supervisor) and n members with their keys,
# a deployed contract, and helpers to make receipts and transactions.
"""Test fixture world for the ledger (host tests and property tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from leither import crypto, ids, receipt
from leither_host.ledger import pool
from leither_host.ledger.org import Organization, make_application

CONTRACT = """
format = "leither-contract/1"
name = "test-coop"

[[share]]
name = "operators"
millionths = 100000
basis = "role"
role = "supervisor"

[[share]]
name = "stakers"
millionths = 200000
basis = "stake"

[[share]]
name = "storage"
millionths = 700000
basis = "performance"
weights = { stored = 600000, served = 300000, audits = 100000 }

[rewards]
max_per_epoch = 5000

[credit]
price_stored = 1073741824
price_served = 0
"""


@dataclass
class World:
    org: Organization
    founder: bytes
    seeds: list[bytes] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [ids.make_id(crypto.sign_public(s)) for s in self.seeds]

    def pub(self, i: int) -> bytes:
        return crypto.sign_public(self.seeds[i])

    def raw(self, i: int) -> bytes:
        return ids.raw_id(self.pub(i))

    def receipt(self, issuer: int, partner: int, start: int, end: int, **counts: int) -> bytes:
        return receipt.make(self.seeds[issuer], self.ids[partner], start, end, **counts)

    def balance(self, i: int) -> int:
        found = self.org.db.tree().get(self.raw(i))
        return found[0] if found else 0


def make_world(directory: Path, members: int = 4, contract: str | None = CONTRACT,
               seed_base: int = 1) -> World:
    founder = bytes([seed_base]) * 32
    org = Organization.create(directory, "coop", founder, now_ms=1000)
    world = World(org, founder, [])
    for i in range(members):
        seed = (seed_base * 1000 + i + 7).to_bytes(32, "big")
        app_id = org.submit(make_application(seed, org.id, "member", f"m{i}", 1500))
        org.approve(app_id, founder, now_ms=2000)
        world.seeds.append(seed)
    if contract:
        pool.deploy_contract(org.db, contract, {m.id for m in org.members()}, now_ms=2500)
    return world

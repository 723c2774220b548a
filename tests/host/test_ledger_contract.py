# Contracts: invalid files fail with an error naming the problem; the split is exact integer
# arithmetic with the documented largest-remainder rule; vesting holds tokens back to the
# treasury; the example contracts shipped in examples/contracts/ are valid.
from pathlib import Path

import pytest

from leither import ids
from leither_host.ledger import contract as c

REPO = Path(__file__).resolve().parents[2]
MEMBER = ids.make_id(b"someone")

BASE = """
format = "leither-contract/1"
name = "x"
"""


def _parse(shares: str, extra: str = "") -> c.Contract:
    return c.parse(BASE + extra + shares)


@pytest.mark.parametrize("shares, message", [
    ("", "no [[share]]"),
    ('[[share]]\nmillionths = 999999\nbasis = "role"\nrole = "member"\n',
     "sum to 999999 millionths, must be exactly 1000000 (missing 1)"),
    ('[[share]]\nmillionths = 1000000\nbasis = "luck"\n', "basis 'luck' is not one of"),
    ('[[share]]\nmillionths = 1000000\nbasis = "role"\n', 'needs role'),
    ('[[share]]\nmillionths = 1000000\nbasis = "role"\nrole = "king"\n', "role 'king'"),
    ('[[share]]\nmillionths = 1000000\nbasis = "member"\nmember = "0OIl"\n',
     "not a valid member ID"),
    ('[[share]]\nmillionths = 1000000\nbasis = "performance"\n', "needs weights"),
    ('[[share]]\nmillionths = 1000000\nbasis = "performance"\nweights = { stored = 5 }\n',
     "weights sum to 5"),
    ('[[share]]\nmillionths = 1000000\nbasis = "performance"\nweights = { storred = 1 }\n',
     "unknown key 'storred'"),
    ('[[share]]\nmilionths = 1000000\nbasis = "stake"\n', "unknown key 'milionths'"),
    ('[[share]]\nmillionths = 1000000.0\nbasis = "stake"\n', "must be an integer"),
    (('[[share]]\nmillionths = 1000000\nbasis = "stake"\n'
      'vesting = { cliff_ms = 10, duration_ms = 5 }\n'), "cliff_ms 10 is after duration_ms 5"),
    (('[[share]]\nname = "a"\nmillionths = 500000\nbasis = "stake"\n'
      '[[share]]\nname = "a"\nmillionths = 500000\nbasis = "stake"\n'), "used twice"),
    ("[[share\n", "not valid TOML"),
])
def test_invalid_contracts_name_the_problem(shares, message):
    with pytest.raises(c.ContractError) as err:
        _parse(shares)
    assert message in str(err.value)
    assert str(err.value).startswith("contract: ")


def test_wrong_format_tag():
    with pytest.raises(c.ContractError, match="format must be"):
        c.parse('format = "v0"\nname = "x"\n')


def test_largest_remainder_rule():
    # 10 split 1:1:1 -> 3,3,3 plus one unit to the first listed (all fractions tie).
    assert c.largest_remainder(10, [("a", 1), ("b", 1), ("c", 1)]) == [
        ("a", 4), ("b", 3), ("c", 3)]
    # 100 by 1:2:4 -> 14.28, 28.57, 57.14: leftover 1 unit to b (largest fraction .57).
    assert c.largest_remainder(100, [("a", 1), ("b", 2), ("c", 4)]) == [
        ("a", 14), ("b", 29), ("c", 57)]
    assert c.largest_remainder(5, [("a", 0), ("b", 0)]) == []
    assert c.largest_remainder(0, [("a", 1)]) == []


def _members(n: int) -> list[c.Member]:
    return [c.Member(ids.make_id(bytes([i])), ids.raw_id(bytes([i])),
                     "supervisor" if i == 0 else "member", 0) for i in range(n)]


def test_split_conserves_and_routes_leftovers_to_treasury():
    contract = _parse('[[share]]\nname = "ops"\nmillionths = 333333\nbasis = "role"\n'
                      'role = "guest"\n'
                      '[[share]]\nname = "all"\nmillionths = 666667\nbasis = "role"\n'
                      'role = "member"\n')
    members = _members(4)
    treasury = b"\xee" * 20
    payout, lines = c.run(contract, 1_000_001, members, {}, {}, treasury, 0)
    assert sum(payout.values()) == 1_000_001
    # 333333.3 and 666667.7: the spare unit goes to "all" (larger fraction).
    assert payout[treasury] == 333_333  # no guests: their part goes to the treasury
    assert lines[0]["to"].startswith("treasury")
    assert sorted(payout[m.raw] for m in members[1:]) == [222222, 222223, 222223]


def test_vesting_and_cliff():
    contract = _parse('[[share]]\nmillionths = 1000000\nbasis = "role"\nrole = "member"\n'
                      'vesting = { cliff_ms = 100, duration_ms = 1000 }\n')
    member = c.Member(MEMBER, ids.id_raw(MEMBER), "member", 0)
    treasury = b"\xee" * 20
    for now, vested in ((99, 0), (100, 100), (500, 500), (5000, 1000)):
        payout, _ = c.run(contract, 1000, [member], {}, {}, treasury, now)
        assert payout.get(member.raw, 0) == vested
        assert payout.get(treasury, 0) == 1000 - vested


def test_stake_and_performance():
    contract = _parse('[[share]]\nname = "s"\nmillionths = 500000\nbasis = "stake"\n'
                      '[[share]]\nname = "p"\nmillionths = 500000\nbasis = "performance"\n'
                      'weights = { stored = 500000, served = 500000 }\n')
    members = _members(3)
    stakes = {members[0].raw: 1, members[1].raw: 3}
    perf = {members[2].raw: c.Performance(stored=10, served=0),
            members[1].raw: c.Performance(stored=10, served=5)}
    payout, _ = c.run(contract, 1000, members, stakes, perf, b"\xee" * 20, 0)
    assert payout[members[0].raw] == 125 and payout[members[1].raw] == 375 + 125 + 250
    assert payout[members[2].raw] == 125


def test_examples_are_valid():
    examples = sorted((REPO / "examples" / "contracts").glob("*.toml"))
    assert len(examples) >= 3
    for path in examples:
        parsed = c.parse(path.read_text())
        assert sum(s.millionths for s in parsed.shares) == c.MILLION
        assert len(parsed.digest()) == 32

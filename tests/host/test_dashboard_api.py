# The dashboard's JSON API without a browser and without boards: the guard (token, Host, Origin,
# JSON body), jobs (argv built from checked parameters, results and errors of the verb), the
# books (balances, a proof bundle that verifies offline), the fleet snapshot and the backup
# history the plot draws.
from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from leither import cbor, crypto, ids, receipt  # noqa: E402
from leither.compat import time_ms  # noqa: E402
from leither_host.cli import main  # noqa: E402
from leither_host.commands.ledger import verify_bundle  # noqa: E402
from leither_host.dashboard import api, jobs  # noqa: E402
from leither_host.dashboard.sampler import NodeState  # noqa: E402
from leither_host.dashboard.server import HOSTS, TOKEN_HEADER, allowed_hosts, make_app  # noqa: E402
from leither_host.errors import CliError  # noqa: E402

TOKEN = "t" * 32
Scenario = Callable[[TestClient], Awaitable[None]]


def with_client(scenario: Scenario, command: list[str] | None = None,
                check_host: bool = False) -> None:
    async def go() -> None:
        app = make_app(TOKEN, sample=False, command=command)
        async with TestClient(TestServer(app)) as client:
            if check_host:  # as `leither dashboard` does once its port is known
                app[HOSTS].update(allowed_hosts("127.0.0.1", client.port))
            await scenario(client)
    asyncio.run(go())


def auth(**extra: str) -> dict[str, str]:
    return {TOKEN_HEADER: TOKEN, **extra}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_every_api_call_needs_the_token() -> None:
    async def scenario(c: TestClient) -> None:
        page = await c.get("/")
        assert page.status == 200 and "Leither" in await page.text()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        script = await c.get("/js/main.js")
        assert script.status == 200 and "javascript" in script.headers["Content-Type"]
        assert "import" in await script.text()
        for bad in ("/js/../server.py", "/js/nosuch.js", "/js/Main.js", "/js/%2e%2e%2fapi.py"):
            assert (await c.get(bad)).status == 404, bad
        for path in ("/api/fleet", "/api/orgs", "/api/jobs", "/api/nodes/x"):
            r = await c.get(path)
            assert r.status == 401 and "token" in (await r.json())["error"]
            r = await c.get(path, headers={TOKEN_HEADER: TOKEN[:-1] + "x"})
            assert r.status == 401
        r = await c.post("/api/jobs", json={"action": "discover"})
        assert r.status == 401
        assert not c.app[api.JOBS].jobs  # nothing ran
        r = await c.get("/api/fleet", headers=auth())
        assert r.status == 200 and (await r.json())["nodes"] == []
    with_client(scenario)


def test_host_and_origin_checks() -> None:
    async def scenario(c: TestClient) -> None:
        host = f"127.0.0.1:{c.port}"
        # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends its own Host.
        r = await c.get("/api/fleet", headers=auth(Host=f"evil.example:{c.port}"))
        assert r.status == 403 and "unexpected Host" in (await r.json())["error"]
        assert (await c.get("/", headers={"Host": "evil.example"})).status == 403
        assert (await c.get("/api/fleet", headers=auth(Host=f"localhost:{c.port}"))).status \
            == 200
        # A write from another origin (CSRF) is refused even with the token.
        r = await c.post("/api/jobs", json={"action": "discover"},
                         headers=auth(Origin="http://evil.example", Host=host))
        assert r.status == 403 and "another origin" in (await r.json())["error"]
        r = await c.post("/api/jobs", json={"action": "discover"},
                         headers=auth(**{"Sec-Fetch-Site": "cross-site", "Host": host}))
        assert r.status == 403
        r = await c.post("/api/jobs", data="action=discover", headers=auth(
            **{"Content-Type": "application/x-www-form-urlencoded", "Host": host}))
        assert r.status == 415
        assert not c.app[api.JOBS].jobs
        assert (await c.post("/", headers={"Host": host})).status == 405
    with_client(scenario, check_host=True)


def test_allowed_hosts() -> None:
    hosts = allowed_hosts("127.0.0.1", 8765)
    assert {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"} <= hosts
    assert "evil.example:8765" not in hosts and "127.0.0.1:8766" not in hosts
    assert allowed_hosts("0.0.0.0", 8765) == frozenset()  # any name; the token guards it


def test_job_parameters_are_checked() -> None:
    async def scenario(c: TestClient) -> None:
        bad = [({"action": "format-disk"}, "no action"),
               ({"action": "claim", "node": "--token=x"}, "node"),
               ({"action": "claim", "node": "board1", "claim_token": "a b"}, "claim_token"),
               ({"action": "audit", "node": "board1", "count": 1000}, "count"),
               ({"action": "mm_backup", "node": "board1", "mid": "../etc"}, "mid"),
               ({"action": "restore", "dead": "board1"}, "onto"),
               ({"node": "board1"}, "action")]
        for params, word in bad:
            r = await c.post("/api/jobs", json=params, headers=auth())
            assert r.status == 400 and word in (await r.json())["error"], params
        r = await c.post("/api/jobs", data="{not json", headers=auth(
            **{"Content-Type": "application/json"}))
        assert r.status == 400
        assert not c.app[api.JOBS].jobs
    with_client(scenario)


def test_argv_of_each_action() -> None:
    build = {name: b for name, (b, _timeout) in jobs.ACTIONS.items()}
    assert build["claim"]({"node": "board1"}) == ["claim", "board1", "--json"]
    assert build["claim"]({"node": "board1", "claim_token": "3f9a0c2e1b7d4a65"}) == \
        ["claim", "board1", "--token", "3f9a0c2e1b7d4a65", "--json"]
    assert build["pair"]({"node": "4AiiDrHT"}) == ["pair", "4AiiDrHT", "--json"]
    assert build["backup_now"]({"node": "10.0.0.7:4800"}) == \
        ["backup", "now", "10.0.0.7:4800", "--json"]
    assert build["audit"]({"node": "b", "count": 8}) == \
        ["backup", "audit", "b", "--count", "8", "--json"]
    assert build["restore"]({"dead": "board1", "onto": "board3"}) == \
        ["restore", "board1", "--onto", "board3", "--json"]
    assert build["rename"]({"node": "board1", "name": "kitchen_2"}) == \
        ["rename", "board1", "kitchen_2", "--json"]
    assert build["forget"]({"node": "4AiiDrHT"}) == ["forget", "4AiiDrHT", "--json"]
    claim = jobs.Job(1, "claim", build["claim"]({"node": "b1", "claim_token": "3f9a0c2e"}))
    assert claim.view()["command"] == "leither claim b1 --token … --json"  # secret not shown
    for bad in ("-x", "a b", "x" * 64, "", "a.b"):
        with pytest.raises(CliError, match="name"):
            build["rename"]({"node": "board1", "name": bad})


# A stand-in for `python -m leither_host`: prints its argv as JSON, or fails like the CLI does.
FAKE_CLI = """
import json, sys
args = sys.argv[1:]
if args[0] == "pair" and args[1] == "offline":
    print("leither: node offline is offline: cannot connect", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"argv": args}))
"""


def test_jobs_run_the_verb_and_report() -> None:
    async def follow(c: TestClient, job: dict[str, Any]) -> dict[str, Any]:
        for _ in range(400):
            if job["state"] != "running":
                return job
            await asyncio.sleep(0.025)
            job = await (await c.get(f"/api/jobs/{job['id']}", headers=auth())).json()
        raise AssertionError("job did not end")

    async def scenario(c: TestClient) -> None:
        r = await c.post("/api/jobs", json={"action": "pair", "node": "board1"},
                         headers=auth())
        assert r.status == 202
        started = await r.json()
        assert started["command"] == "leither pair board1 --json"
        done = await follow(c, started)
        assert done["state"] == "done" and done["result"] == {"argv": ["pair", "board1",
                                                                       "--json"]}
        r = await c.post("/api/jobs", json={"action": "pair", "node": "offline"},
                         headers=auth())
        failed = await follow(c, await r.json())
        assert failed["state"] == "failed"
        assert failed["error"] == "node offline is offline: cannot connect"
        listed = await (await c.get("/api/jobs", headers=auth())).json()
        assert [j["id"] for j in listed["jobs"]] == [failed["id"], done["id"]]
        assert (await c.get("/api/jobs/999", headers=auth())).status == 404
    with_client(scenario, command=[sys.executable, "-c", FAKE_CLI])


# A stand-in CLI that notes when each run starts and ends (in the file named by argv).
TIMED_CLI = """
import json, sys, time
args = sys.argv[1:]
with open(%r, "a") as log:
    log.write(json.dumps(["start", args[0], args[1], time.monotonic()]) + "\\n")
time.sleep(0.3)
with open(%r, "a") as log:
    log.write(json.dumps(["end", args[0], args[1], time.monotonic()]) + "\\n")
print("{}")
"""


def test_inventory_writers_run_one_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"

    async def scenario(c: TestClient) -> None:
        started = [await (await c.post("/api/jobs", json=p, headers=auth())).json() for p in
                   ({"action": "claim", "node": "b1"}, {"action": "claim", "node": "b2"},
                    {"action": "pair", "node": "b3"}, {"action": "pair", "node": "b4"})]
        for _ in range(400):
            views = [await (await c.get(f"/api/jobs/{j['id']}", headers=auth())).json()
                     for j in started]
            if all(v["state"] == "done" for v in views):
                break
            await asyncio.sleep(0.05)
        assert all(v["state"] == "done" for v in views), views
    with_client(scenario, command=[sys.executable, "-c", TIMED_CLI % (str(log), str(log))])
    events = [json.loads(line) for line in log.read_text().splitlines()]
    span = {(verb, node): [t for kind, v, n, t in events if (v, n) == (verb, node)]
            for _kind, verb, node, _t in events}
    (c1s, c1e), (c2s, c2e) = span[("claim", "b1")], span[("claim", "b2")]
    assert c1e <= c2s or c2e <= c1s  # the claims did not overlap
    (p1s, p1e), (p2s, p2e) = span[("pair", "b3")], span[("pair", "b4")]
    assert p1s < p2e and p2s < p1e  # the pairing windows opened side by side


def test_unknown_node_is_a_clear_error() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.get("/api/nodes/no-such-board", headers=auth())
        assert r.status == 404 and "no node named" in (await r.json())["error"]
        r = await c.get("/api/nodes/no-such-board/mimei/x/content?version=../../x",
                        headers=auth())
        assert r.status == 400 and "version" in (await r.json())["error"]
        r = await c.get("/api/nodes/no-such-board/history", headers=auth())
        assert r.status == 404
        r = await c.get("/api/nodes/no-such-board/logs", headers=auth())
        assert r.status == 404 and "in the fleet" in (await r.json())["error"]
        r = await c.get("/api/nodes/x/logs?after=-1", headers=auth())
        assert r.status == 400
    with_client(scenario)


def test_fleet_rows_and_backup_history() -> None:
    node = NodeState("4AiiDrHT7zFv6G8i5uqr8wKHJzfT", {"name": "board1", "host": "127.0.0.1",
                                                      "port": 4800, "seen": 5})
    node.facts = {"name": "board1", "role": "owner", "free": 100, "heap": 5000,
                  "peer": "9zEu", "uptime": 7}
    # The node's `sent` counter: 0, then 1000 and 3000 bytes pushed, then the node restarts
    # (back to 0) and pushes 500 more: the history counts on, 3500 in all.
    for sent, pending in ((0, 3000), (1000, 2000), (3000, 0), (0, 500), (500, 0)):
        node.sample({"sent": sent, "pending": pending, "used_on_partner": sent})
    assert [p[1] for p in node.history] == [0, 1000, 3000, 3000, 3500]
    assert [p[2] for p in node.history] == [3000, 2000, 0, 500, 0]
    row = node.row()
    assert row["free_bytes"] == 100 * 1024 and row["heap_bytes"] == 5000
    assert row["partner"] == "9zEu" and row["online"] is False and row["last_seen"] == 5
    for _ in range(NodeState.__dataclass_fields__["history"].default_factory().maxlen + 5):
        node.sample({"sent": 0, "pending": 0})
    assert len(node.history) == node.history.maxlen  # bounded

    async def scenario(c: TestClient) -> None:
        c.app[api.SAMPLER].nodes[node.id] = node
        fleet = await (await c.get("/api/fleet", headers=auth())).json()
        assert [n["name"] for n in fleet["nodes"]] == ["board1"]
        r = await c.get("/api/nodes/board1/logs", headers=auth())  # no session: offline
        assert r.status == 409 and "offline" in (await r.json())["error"]
        for ref in ("board1", node.id, node.id[:6]):
            r = await c.get(f"/api/nodes/{ref}/history", headers=auth())
            data = await r.json()
            assert r.status == 200 and data["id"] == node.id
            assert len(data["points"]) == node.history.maxlen
    with_client(scenario)


def _cli(home: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--home", str(home), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_balances_and_proof_download(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli(home, capsys, "org", "create", "coop")
    for name in ("alice", "bob"):
        _cli(home, capsys, "org", "apply", "--key", name, "--name", name)
        _cli(home, capsys, "org", "approve", name)
    _cli(home, capsys, "contract", "deploy", str(Path(__file__).parents[2] / "examples" /
                                                  "contracts" / "backup-coop.toml"))
    alice = (home / "data" / "keys" / "alice.key").read_bytes()
    bob_id = ids.make_id(crypto.sign_public((home / "data" / "keys" / "bob.key").read_bytes()))
    now = time_ms()
    rdir = home / "r"
    rdir.mkdir()
    (rdir / "one.cbor").write_bytes(receipt.make(alice, bob_id, now - 3_600_000, now,
                                                 stored=40 << 30, served=1 << 30,
                                                 audits_ok=3))
    _cli(home, capsys, "receipts", "collect", "--dir", str(rdir))
    _cli(home, capsys, "settle", "--income", "1000000", "--income-id", "inv-1")
    expected = _cli(home, capsys, "ledger", "balance", "bob")["accounts"][0]["balance"]

    async def scenario(c: TestClient) -> None:
        orgs = await (await c.get("/api/orgs", headers=auth())).json()
        assert [(o["name"], o["epoch"], o["supply"]) for o in orgs] == [("coop", 1, 1000000)]
        books = await (await c.get("/api/orgs/coop", headers=auth())).json()
        assert sum(a["balance"] for a in books["accounts"]) == 1000000
        bob = [a for a in books["accounts"] if a["name"] == "bob"][0]
        assert bob["balance"] == expected and bob["id"] == bob_id
        assert [r["status"] for r in books["receipts"]] == ["settled"]
        r = await c.get(f"/api/orgs/coop/proof/{bob_id}", headers=auth())
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        bundle = await r.read()
        checked = verify_bundle(bundle, books["id"])  # offline, from the bytes alone
        assert checked["balance"] == expected and checked["included"]
        assert cbor.loads(bundle)["member"] == bob_id
        r = await c.get("/api/orgs/coop/proof/nobody", headers=auth())
        assert r.status == 404 and "not a member" in (await r.json())["error"]
        r = await c.get("/api/orgs/elsewhere", headers=auth())
        assert r.status == 502 and "no organization" in (await r.json())["error"]
    with_client(scenario)

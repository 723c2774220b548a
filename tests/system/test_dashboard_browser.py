# `leither dashboard` in a real browser: Debian's chromium driven by Playwright (pointed at
# /usr/bin/chromium; nothing is downloaded) against real simulated MicroPython boards on
# loopback, or (as root) on a LAN of their own: each board in a network namespace, the dashboard
# and the browser in the CLI's, so no other pairing window on this machine overlaps ours. A
# user's whole journey by clicks: claim three boards, make a version, pair two
# boards (both codes shown side by side), back up, audit, cut a receipt, lose a board and
# restore it onto the third, download versions, and read an organization's balances with a
# proof download, each checked against what the page shows and what the CLI says. Also: the
# API refuses writes without the token, from another origin, or under another Host name.
# Saves build/dashboard.png (the README's screenshot, docs/dashboard.png, is a copy of it).
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from leither_host import lan
from leither_host.sim import Sim

CHROMIUM = os.environ.get("LEITHER_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "build" / "dashboard.png"
UI_TIMEOUT_MS = 30000  # ms for the page to show what a step did (polls on a loaded machine)
RESTORE_TIMEOUT_MS = 120000  # ms for a restore (pull every version, restart the board)
PAIR_ATTEMPTS = 3  # presses of the pairing button, when another run's window overlaps ours

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed (pip install playwright)")
if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)


def leither(home: Path, *args: str, timeout: float = 120) -> Any:
    """A verb where the host CLI lives (the CLI namespace on a simulated LAN)."""
    env = dict(os.environ, LEITHER_HOME=str(home))
    proc = subprocess.run(Sim().cli_argv([sys.executable, "-m", "leither_host", *args]),
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"leither {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


def books(*args: str) -> Any:
    """A ledger verb in this process (no node involved: quicker than a new interpreter)."""
    from leither_host.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    assert code == 0, f"leither {' '.join(args)} failed"
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three unclaimed boards, and the dashboard serving them (its URL carries the token)."""
    home = tmp_path_factory.mktemp("home")
    os.environ["LEITHER_HOME"] = str(home)
    sim = Sim()  # the default place under LEITHER_HOME: claim and restore look there
    dash: subprocess.Popen[str] | None = None
    use_lan = lan.available() is None
    try:
        sim.up(3, "micropython", use_lan=use_lan, prefix=f"dash{os.getpid() % 10000}b")
        from leither_host.commands.sim import _remember

        _remember(sim)
        chromium = CHROMIUM
        if use_lan:  # the browser runs where the dashboard listens: in the CLI namespace
            wrapper = home / "chromium-in-cli-ns"
            wrapper.write_text(f'#!/bin/sh\nexec {" ".join(sim.cli_argv([CHROMIUM]))} "$@"\n')
            wrapper.chmod(0o755)
            chromium = str(wrapper)
        dash = subprocess.Popen(sim.cli_argv([sys.executable, "-m", "leither_host", "dashboard",
                                              "--port", "0", "--poll", "1"]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        assert dash.stdout is not None
        line = dash.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:(\d+)/)#token=(\S+)", line)
        assert found, f"dashboard printed {line!r}"
        yield {"home": home, "sim": sim, "url": found.group(1), "token": found.group(3),
               "link": found.group(0), "chromium": chromium}
    finally:
        if dash is not None:
            dash.terminate()
            try:
                dash.wait(10)
            except subprocess.TimeoutExpired:
                dash.kill()
                dash.wait()
        for board in sim.boards:
            print(f"--- {board.name} log ---\n{sim.log_tail(board, 30)}")
        sim.down()
        os.environ.pop("LEITHER_HOME", None)


# HTTP requests made where the dashboard listens; prints each one's status.
REQUESTS = """
import json, sys, urllib.error, urllib.request
out = []
for url, headers, body in json.loads(sys.argv[1]):
    req = urllib.request.Request(url, data=body.encode() if body is not None else None,
                                 headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            out.append(response.status)
    except urllib.error.HTTPError as err:
        out.append(err.code)
print(json.dumps(out))
"""


def test_api_needs_token_origin_and_host(world: dict[str, Any]) -> None:
    url, token = world["url"], world["token"]
    job = json.dumps({"action": "discover"})
    as_json = {"Content-Type": "application/json"}
    cases = [  # (path, headers, body, expected status)
        ("api/jobs", as_json, job, 401),
        ("api/jobs", {**as_json, "X-Leither-Token": "wrong" * 8}, job, 401),
        ("api/jobs", {**as_json, "X-Leither-Token": token, "Origin": "http://evil.example"},
         job, 403),
        ("api/fleet", {"X-Leither-Token": token, "Host": "evil.example"}, None, 403),
        ("api/fleet", {"X-Leither-Token": token}, None, 200),
        ("api/jobs", {}, None, 401),
    ]
    argv = world["sim"].cli_argv([sys.executable, "-c", REQUESTS, json.dumps(
        [(url + path, headers, body) for path, headers, body, _ in cases])])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [status for *_, status in cases]


def _row(page: Any, name: str) -> Any:
    return page.locator(f"#fleet tbody tr[data-name='{name}']")


def test_claim_pair_backup_restore_in_the_browser(world: dict[str, Any], tmp_path: Path
                                                  ) -> None:
    home, sim = world["home"], world["sim"]
    first, second, fresh = (b.name for b in sim.boards)
    expect = sync_api.expect
    started = time.monotonic()

    def phase(name: str) -> None:  # where the time goes, shown with -s or on failure
        print(f"{time.monotonic() - started:6.1f} s  {name}")
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=world["chromium"],
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900},
                                    accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(world["url"])  # without the token: only the form that asks for it
            expect(page.locator("#token-gate")).to_be_visible()
            expect(page.locator("#main")).to_be_hidden()
            page.goto(world["link"])  # the printed link, pasted into the same tab
            expect(page.locator("#main")).to_be_visible()
            expect(page.locator("#token-gate")).to_be_hidden()
            assert "#token" not in page.url  # the page takes the token out of the address

            # Claim: three unclaimed boards, a Claim button each.
            for name in (first, second, fresh):
                expect(_row(page, name).locator(".role")).to_have_text("unclaimed")
                _row(page, name).locator("button[data-action=claim]").click()
            for name in (first, second, fresh):
                expect(_row(page, name).locator(".role")).to_have_text("owner")
            phase("claimed")
            ids = {name: _row(page, name).get_attribute("data-id")
                   for name in (first, second, fresh)}
            expect(page.locator("#jobs li[data-state=done]")).to_have_count(3)
            assert page.locator("#jobs li[data-state=failed]").count() == 0, \
                page.locator("#jobs").inner_text()
            expect(page.locator("#jobs")).to_contain_text(f"$ leither claim {first} --json")

            # An organization of the boards (its first epoch starts now: receipts for periods
            # before it would not count).
            books("org", "create", "coop")
            for name in (first, second):
                books("org", "apply", "--org", "coop", "--node", name, "--name", name)
                books("org", "approve", "--org", "coop", ids[name])
            books("contract", "deploy", "--org", "coop",
                  str(REPO / "examples" / "contracts" / "backup-coop.toml"))
            phase("org")

            # A file MiMei made from the shell, versioned from the page.
            mid = leither(home, "mm", "create", first, "--app", "dash", "--ext", "txt").strip()
            data = os.urandom(30000)
            (tmp_path / "in.bin").write_bytes(data)
            leither(home, "mm", "put", first, mid, str(tmp_path / "in.bin"))
            _row(page, first).click()
            mimei = page.locator(f"#mimei tr[data-mid='{mid}']")
            expect(mimei).to_be_visible()
            mimei.locator("button[data-action=mm-backup]").click()
            expect(page.locator("#versions-table tr[data-n='1']")).to_be_visible()
            with page.expect_download() as got:
                page.locator("#versions-table tr[data-n='1'] button").click()
            assert Path(got.value.path()).read_bytes() == data

            phase("versioned")
            # Pair the first two: both windows open, both codes side by side and the same.
            page.select_option("#pair-a", ids[first])
            page.select_option("#pair-b", ids[second])
            verdict = page.locator("#pair-verdict")
            for _attempt in range(PAIR_ATTEMPTS):
                page.click("#pair-open")
                expect(verdict).to_have_text(re.compile("Codes match|Not paired"))
                if "Codes match" in verdict.inner_text():
                    break
                # Another node's window was open on this loopback at the same moment (another
                # test run): both abort, as WPS does; the user presses again.
                assert "overlap" in verdict.inner_text(), verdict.inner_text()
                time.sleep(2)
            expect(verdict).to_have_text(re.compile("Codes match"))
            code_a = page.locator("#code-a .code").inner_text()
            assert re.fullmatch(r"\d{6}", code_a)
            assert page.locator("#code-b .code").inner_text() == code_a
            status = leither(home, "pair", second, "--status", "--json")
            assert status["pair_code"] == code_a and status["peer"] == ids[first]
            expect(_row(page, first).locator(".partner")).to_have_text(second)

            phase("paired")
            # Back up, then audit the partner and cut a receipt, from the Backup card.
            _row(page, first).click()
            expect(page.locator("#backup-now")).to_be_enabled()
            page.click("#backup-now")
            expect(page.locator("#jobs li").first).to_contain_text("backup now")
            expect(page.locator("#jobs li").first).to_have_attribute("data-state", "done")
            expect(page.locator("#backup-facts .pending")).to_have_text("0 B")
            expect(page.locator("#backup-facts .partner")).to_have_text(second)
            expect(page.locator("#log")).to_contain_text("backup: pushed")  # its own log
            # The plot: the sampler saw the bytes go out (at least the 30 kB version).
            page.wait_for_function("Number(document.getElementById('plot')"
                                   ".getAttribute('data-pushed')) >= 30000",
                                   timeout=UI_TIMEOUT_MS)
            assert page.locator("#plot path.pushed-line").count() == 1
            phase("backed up")
            page.click("#audit")
            expect(page.locator("#audit-list li")).to_have_count(4)
            assert page.locator("#audit-list").inner_text().count("pass") == 4
            page.click("#cut-receipt")
            expect(page.locator("#receipts-table tbody tr")).to_have_count(1)

            phase("audited")
            # The books: the receipt the first board signed is settled; its partner is paid.
            leither(home, "receipts", "collect", "--org", "coop", ids[first])
            settled = books("settle", "--org", "coop", "--income", "1000000", "--income-id",
                            "fees-1")
            assert settled["receipts"] == 1, settled["rejected"]
            phase("settled")

            # Pull the first board's plug and restore it onto the fresh one.
            sim.kill(first)
            expect(_row(page, first).locator(".state")).to_contain_text("offline")
            # Its MiMei are still listed: read through its partner, opened with the escrow.
            _row(page, second).click()
            _row(page, first).click()
            expect(page.locator("#node-body")).to_contain_text("read through its partner")
            expect(page.locator(f"#mimei tr[data-mid='{mid}']")).to_be_visible()
            page.select_option("#restore-dead", ids[first])
            page.select_option("#restore-onto", ids[fresh])
            page.click("#restore")
            expect(page.locator("#restore-result")).to_have_text(re.compile("Restored"),
                                                                 timeout=RESTORE_TIMEOUT_MS)
            where = f"{sim.board(fresh).ip}:{sim.board(fresh).port}"
            expect(_row(page, first).locator(".state")).to_contain_text("online")
            expect(page.locator(f"#fleet tbody tr[data-id='{ids[fresh]}']")).to_have_count(0)
            _row(page, first).click()
            expect(page.locator("#node-body")).to_contain_text(where)
            page.locator(f"#mimei tr[data-mid='{mid}'] button").first.click()
            with page.expect_download() as got:
                page.locator("#versions-table tr[data-n='1'] button").click()
            assert Path(got.value.path()).read_bytes() == data

            phase("restored")
            # The organization's balances, and a proof that checks offline.
            page.reload()
            balance = page.locator(f"#balances tr[data-member='{ids[second]}'] .balance")
            expect(balance).not_to_have_text("0")
            with page.expect_download() as got:
                page.locator(f"#balances tr[data-member='{ids[second]}'] button").click()
            proof = Path(got.value.path())
            checked = books("ledger", "verify", "--proof", str(proof))
            assert checked["member"] == ids[second] and checked["included"]
            assert f"{checked['balance']:,}" == balance.inner_text()
            # The restored node signs receipts for its partner again.
            _row(page, first).click()
            expect(page.locator("#backup-facts .partner")).to_have_text(second)
            page.click("#cut-receipt")
            expect(page.locator("#receipts-table tbody tr").first).to_be_visible()
            expect(page.locator("#code-a")).to_have_attribute("data-state", "paired")
            expect(page.locator("#code-b .code")).to_have_text(code_a)  # shown after a reload

            # Rename the partner, here and on the node.
            garage = f"{second}-garage"
            _row(page, second).click()
            page.fill("#rename-name", garage)
            page.locator(".manage button[type=submit]").click()
            expect(_row(page, garage)).to_have_count(1)
            assert leither(home, "status", ids[second], "--json")["name"] == garage
            _row(page, first).click()
            expect(page.locator("#backup-facts .partner")).to_have_text(garage)
            expect(page.locator("#receipts-table tbody tr").first).to_be_visible()
            expect(page.locator("#log")).to_contain_text("ready")
            phase("ledger")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert errors == [], errors
        except BaseException:
            # What the page showed when a step failed, and what its jobs said.
            if "page" in locals():
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT.with_name("dashboard-failed.png")),
                                full_page=True)
                print("--- activity ---\n" + page.locator("#jobs").inner_text())
            raise
        finally:
            browser.close()

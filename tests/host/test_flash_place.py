# Where `leither flash` puts a small-heap board's code, decided from what the board reports:
# the ROMFS deploy path (no ROM partition can be driven here, so mpremote is replaced by a
# recorder answering the board's probe).
from __future__ import annotations

import json
from pathlib import Path

import pytest

from leither_host import flash
from leither_host.errors import CliError


def fake_board(monkeypatch: pytest.MonkeyPatch, probe: dict[str, object]) -> list[list[str]]:
    calls: list[list[str]] = []

    def mpremote(port: str, commands: list[list[str]], resume: bool) -> str:
        calls.extend(commands)
        if commands[0][:1] == ["exec"] and "rom_ioctl" in commands[0][1]:
            return json.dumps(probe) + "\n"
        return ""

    monkeypatch.setattr(flash, "_mpremote", mpremote)
    return calls


def test_romfs_board_gets_the_image_and_loses_an_old_copy(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    calls = fake_board(monkeypatch, {"frozen": False, "rom": 1, "rom_size": 1 << 20,
                                     "lib_copy": True})
    result = flash.FlashResult(board="esp32", name="b", claim_token="t")
    flash._place_code("esp32", "/dev/null", True, result, lambda _m: None)
    deploy = [c for c in calls if c[:1] == ["romfs"]]
    assert len(deploy) == 1 and deploy[0][:4] == ["romfs", "--partition", "0", "deploy"]
    image = Path(deploy[0][4])
    assert image.read_bytes()[:3] == b"\xd2\xcd\x31"
    assert result.mode == "romfs" and result.rom_image_bytes == image.stat().st_size
    assert any("lib/leither" in c[1] for c in calls if c[0] == "exec" and "_rm(" in c[1])


def test_flash_says_which_parts_went_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # The board's bundle_parts (esp32: db) by default; --parts all for a bigger partition.
    fake_board(monkeypatch, {"frozen": False, "rom": 1, "rom_size": 1 << 20, "lib_copy": False})
    said: list[str] = []
    result = flash.FlashResult(board="esp32", name="b", claim_token="t")
    flash._place_code("esp32", "/dev/null", True, result, said.append)
    assert result.left_out == ["mdns_responder", "backup"]
    assert list(result.part_bytes) == ["core", "db"]
    assert any(m.startswith("parts: core ") and "left out: mdns_responder, backup" in m
               for m in said), said
    said.clear()
    full = flash.FlashResult(board="esp32", name="b", claim_token="t")
    flash._place_code("esp32", "/dev/null", True, full, said.append, ["all"])
    assert full.left_out == [] and set(full.part_bytes) == {"core", "db", "mdns_responder",
                                                            "backup"}
    assert full.rom_image_bytes > result.rom_image_bytes + sum(
        n for p, n in full.part_bytes.items() if p not in ("core", "db"))
    assert not any("left out" in m for m in said)


def test_romfs_partition_too_small_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_board(monkeypatch, {"frozen": False, "rom": 1, "rom_size": 4096,
                                     "lib_copy": False})
    result = flash.FlashResult(board="esp32", name="b", claim_token="t")
    with pytest.raises(CliError, match="ROMFS partition holds 4096"):
        flash._place_code("esp32", "/dev/null", True, result, lambda _m: None)
    assert not [c for c in calls if c[:1] == ["romfs"]]


def test_frozen_board_gets_no_code(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_board(monkeypatch, {"frozen": True, "rom": 1, "rom_size": 1 << 20,
                                     "lib_copy": False})
    result = flash.FlashResult(board="esp32", name="b", claim_token="t")
    flash._place_code("esp32", "/dev/null", True, result, lambda _m: None)
    assert result.mode == "frozen" and len(calls) == 1  # the probe, nothing else

# The fleet inventory: name resolution (name, ID, ID prefix, address) and atomic writes.
from __future__ import annotations

import json
from pathlib import Path

import pytest

from leither_host import fleet as fleetmod
from leither_host.errors import CliError
from leither_host.fleet import Fleet, split_address


def make(tmp_path: Path) -> Fleet:
    f = Fleet(tmp_path / "fleet.json")
    f.remember({"id": "3xNu9U3uLq7R6GvMd5HL6z33XcPs", "name": "kitchen", "host": "10.0.0.2",
                "port": 4800})
    f.remember({"id": "3xNa1111111111111111111111", "name": "garage", "host": "10.0.0.3",
                "port": 4800})
    f.remember({"id": "2ZYXGLhmxUyqb4SyoF111111111", "name": "attic", "host": "10.0.0.4",
                "port": 4801})
    return f


def test_resolve_by_name_id_prefix_and_address(tmp_path: Path) -> None:
    f = make(tmp_path)
    assert f.resolve("kitchen")["host"] == "10.0.0.2"
    assert f.resolve("2ZYXGLhmxUyqb4SyoF111111111")["name"] == "attic"
    assert f.resolve("2ZY")["name"] == "attic"
    assert f.resolve("10.0.0.4:4801")["name"] == "attic"
    assert f.resolve("10.0.0.3")["name"] == "garage"
    unknown = f.resolve("10.9.9.9:4900")
    assert unknown["id"] is None and unknown["port"] == 4900
    with pytest.raises(CliError, match="matches several nodes"):
        f.resolve("3xN")
    with pytest.raises(CliError, match="no node named 'cellar'"):
        f.resolve("cellar")


def test_remember_updates_and_keeps_fields(tmp_path: Path) -> None:
    f = make(tmp_path)
    f.remember({"id": "2ZYXGLhmxUyqb4SyoF111111111", "host": "10.0.0.9", "name": None})
    node = f.resolve("attic")
    assert node["host"] == "10.0.0.9" and node["port"] == 4801  # name and port kept
    f.close()
    again = Fleet(tmp_path / "fleet.json")
    assert again.resolve("attic")["host"] == "10.0.0.9"  # persisted


def test_a_failed_write_leaves_the_old_inventory(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    f = make(tmp_path)
    before = (tmp_path / "fleet.json").read_text()

    def broken_dump(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fleetmod.json, "dump", broken_dump)
    with pytest.raises(OSError):
        f.remember({"id": "4VACjpSnNJuUoboj45rH3cyTFrr8", "name": "new"})
    monkeypatch.undo()
    assert (tmp_path / "fleet.json").read_text() == before
    assert json.loads(before)  # still whole JSON
    assert Fleet(tmp_path / "fleet.json").resolve("kitchen")["host"] == "10.0.0.2"


def test_corrupt_inventory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "fleet.json").write_text('{"nodes": {"1": {"id": ')
    with pytest.raises(CliError, match="corrupt"):
        Fleet(tmp_path / "fleet.json").all()


def test_split_address() -> None:
    assert split_address("10.0.0.2:4800") == ("10.0.0.2", 4800)
    assert split_address("localhost") == ("localhost", None)
    assert split_address("kitchen") == (None, None)
    assert split_address("10.0.0.2:http") == (None, None)
    assert split_address("300.1.1.1") == (None, None)

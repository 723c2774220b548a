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
    with pytest.raises(CliError, match="matches 2 nodes"):
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


def test_one_row_per_id_and_unique_names(tmp_path: Path) -> None:
    f = make(tmp_path)
    # A new node announcing a name another row holds takes it; the old row is renamed and
    # the change is told (sim up/down cycles left three rows named board1 before).
    f.remember({"id": "4VACjpSnNJuUoboj45rH3cyTFrr8", "name": "kitchen", "host": "10.0.0.5"})
    assert f.resolve("kitchen")["id"] == "4VACjpSnNJuUoboj45rH3cyTFrr8"
    assert f.resolve("kitchen-3xNu9U")["id"] == "3xNu9U3uLq7R6GvMd5HL6z33XcPs"
    assert any("kitchen now means 4VACjp" in n for n in f.notices)
    names = [n["name"] for n in f.all()]
    assert len(names) == len(set(names)) == 4
    # A known node keeps this host's name; what it calls itself is kept apart.
    f.remember({"id": "2ZYXGLhmxUyqb4SyoF111111111", "name": "attic-2"})
    node = f.resolve("attic")
    assert node["node_name"] == "attic-2" and len(f.all()) == 4
    with pytest.raises(CliError, match="calls itself attic-2"):
        f.resolve("attic-2")


def test_ambiguous_name_lists_the_candidates(tmp_path: Path) -> None:
    # An inventory written before names were unique: the name is an error naming both IDs.
    (tmp_path / "fleet.json").write_text(json.dumps({"nodes": {
        "1": {"id": "3xNu9U3uLq7R6GvMd5HL6z33XcPs", "name": "board1"},
        "2": {"id": "2ZYXGLhmxUyqb4SyoF111111111", "name": "board1"}}}))
    f = Fleet(tmp_path / "fleet.json")
    with pytest.raises(CliError) as err:
        f.resolve("board1")
    assert "3xNu9U3uLq7R6GvMd5HL6z33XcPs" in str(err.value)
    assert "2ZYXGLhmxUyqb4SyoF111111111" in str(err.value) and "forget" in str(err.value)
    (tmp_path / "other").mkdir()
    with pytest.raises(CliError, match=r"matches 2 nodes: garage \(3xNa.*kitchen \(3xNu"):
        make(tmp_path / "other").resolve("3xN")


def test_rename_and_forget(tmp_path: Path) -> None:
    f = make(tmp_path)
    f.rename("2ZYXGLhmxUyqb4SyoF111111111", "loft")
    assert f.resolve("loft")["host"] == "10.0.0.4"
    with pytest.raises(CliError, match="no node named 'attic'"):
        f.resolve("attic")
    with pytest.raises(CliError, match="taken by 3xNu9U"):
        f.rename("2ZYXGLhmxUyqb4SyoF111111111", "kitchen")
    for bad in ("", "a/b", "x" * 64, "-x", "10.0.0.1", "é"):
        with pytest.raises(CliError):
            f.rename("2ZYXGLhmxUyqb4SyoF111111111", bad)
    assert f.forget("2ZYXGLhmxUyqb4SyoF111111111") is True
    assert f.forget("2ZYXGLhmxUyqb4SyoF111111111") is False
    assert [n["name"] for n in f.all()] == ["garage", "kitchen"]


def _board_root(path: Path, seed: bytes) -> Path:
    path.mkdir(parents=True)
    (path / "node.key").write_bytes(seed)
    return path


def test_sim_boards_remembered_forgotten_and_twins_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEITHER_HOME", str(tmp_path / "home"))
    r1 = _board_root(tmp_path / "b1", b"\x01" * 32)
    r2 = _board_root(tmp_path / "b2", b"\x02" * 32)
    fleetmod.remember_boards([("board1", str(r1), "127.0.0.1", 4800, True, "unix"),
                              ("board2", str(r2), "127.0.0.1", 4801, True, "unix")])
    f = Fleet()
    id1, id2 = fleetmod.node_id_of_root(r1), fleetmod.node_id_of_root(r2)
    assert f.resolve("board1")["id"] == id1 and f.resolve("board2")["port"] == 4801
    f.close()
    # board2 now holds board1's identity (a restore onto it) and board1 runs again: said, and
    # the ID stays where the inventory had it.
    (r2 / "node.key").write_bytes(b"\x01" * 32)
    warnings = fleetmod.remember_boards([("board1", str(r1), "127.0.0.1", 4800, True, "unix"),
                                         ("board2", str(r2), "127.0.0.1", 4801, True, "unix")])
    assert warnings and "hold one identity" in capsys.readouterr().err
    f = Fleet()
    assert f.get(str(id1))["port"] == 4800 and f.get(str(id1))["name"] == "board1"
    f.close()
    fleetmod.forget_boards([r1, r2])
    f = Fleet()
    assert [n["id"] for n in f.all()] == [id2]  # board2's first ID: no root holds it now
    f.close()


def _remember_many(path: str, first: int, count: int) -> None:
    f = Fleet(Path(path))
    for i in range(first, first + count):
        f.remember({"id": "node%04d" % i, "name": "n%04d" % i, "host": "10.0.0.9",
                    "port": 4800 + i})
    f.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    # Three claims clicked together in the dashboard lost one inventory update: each writer
    # reads, changes and rewrites the whole file, through one shared temp name.
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    path = str(tmp_path / "fleet.json")
    procs = [ctx.Process(target=_remember_many, args=(path, k * 30, 30)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(n["name"] for n in Fleet(Path(path)).all())
    assert names == ["n%04d" % i for i in range(90)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.json", "fleet.json.lock"]

# Bookkeepers on one machine, for the demo and for trying things out: a loopback etcd cluster,
# N bookkeeper keys, the organization's set record and genesis, and the bookkeepers themselves
# (stepped by the caller, or each in a thread with serve()). Everything lives under one
# directory the caller owns; close() stops the bookkeepers and the cluster.
"""A local etcd cluster and N bookkeepers for an organization (demo helper)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Self

from leither import crypto
from leither_host.ledger import bookkeepers as bk
from leither_host.ledger.etcdcluster import EtcdCluster
from leither_host.ledger.records import load_or_make_key


class LocalBooks:
    """start(): cluster up, bookkeepers named and the genesis published for org (an
    Organization whose key this host holds, only its founder, no epoch settled)."""

    def __init__(self, org: Any, directory: Path, bookkeepers: int = 3,
                 etcd_members: int = 3) -> None:
        self.org = org
        self.dir = Path(directory)
        self.n = bookkeepers
        self.cluster = EtcdCluster(self.dir / "etcd", etcd_members)
        self.keepers: list[bk.Bookkeeper] = []
        self.threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.log: bk.EtcdLog | None = None

    def start(self) -> Self:
        self.cluster.start()
        seeds = [load_or_make_key(self.dir / f"bk{i}.key")[0] for i in range(self.n)]
        books = bk.set_bookkeepers(self.org, [(f"bk{i}", crypto.sign_public(s))
                                              for i, s in enumerate(seeds)],
                                   self.cluster.endpoints)
        self.log = bk.log_for(books)
        bk.publish_genesis(self.org, self.log)
        self.keepers = [bk.Bookkeeper(self.dir / f"books{i}", s, bk.log_for(books))
                        for i, s in enumerate(seeds)]
        return self

    def submit(self, inputs: list[tuple[str, bytes]], now_ms: int | None = None
               ) -> tuple[int, bool]:
        assert self.log is not None, "start() first"
        return bk.submit(self.log, inputs, now_ms)

    def step(self) -> None:
        """Every bookkeeper applies what is in the log; then quorums are collected."""
        for k in self.keepers:
            while k.step():
                pass
        for k in self.keepers:
            k.step()

    def serve_in_threads(self) -> None:
        """Each bookkeeper in its own thread (its own SQLite connection), until close()."""
        def loop(keeper: bk.Bookkeeper) -> None:
            while not self._stop.is_set():
                try:
                    if keeper.step() == 0:
                        self._stop.wait(0.05)
                except bk.LogUnavailable:
                    self._stop.wait(0.5)
            keeper.close()

        for k in self.keepers:
            k.close()  # reopened inside its thread: a connection stays in its thread
            t = threading.Thread(target=loop, args=(k,), daemon=True)
            t.start()
            self.threads.append(t)

    def status(self) -> dict[str, Any]:
        assert self.log is not None, "start() first"
        books = self.org.books()
        return bk.status(self.log, books)

    def close(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=10)
        if not self.threads:
            for k in self.keepers:
                k.close()
        self.cluster.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

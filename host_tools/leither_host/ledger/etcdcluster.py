# A local etcd cluster on loopback for tests, benches and the demo: N members (etcd 3.4+ from
# Debian's etcd-server, /usr/bin/etcd), each with its own data dir under a directory the caller
# owns and two free ports, started together and stopped (SIGTERM, then SIGKILL) by `close()`.
# A member can be stopped and started again (same data dir) to play a crash or a partition.
"""Start and stop a loopback etcd cluster."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

START_TIMEOUT_S = 20.0  # a loaded 2-core machine: members take a few seconds to elect
ETCD = "etcd"


def etcd_binary() -> str | None:
    return shutil.which(ETCD) or (("/usr/bin/etcd") if os.path.exists("/usr/bin/etcd") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdCluster:
    def __init__(self, directory: Path, members: int = 3, token: str = "leither") -> None:
        binary = etcd_binary()
        if binary is None:
            raise FileNotFoundError("etcd is not installed (Debian: apt-get install etcd-server)")
        self.binary = binary
        self.dir = Path(directory)
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = [_free_port() for _ in self.names]
        self.peer_ports = [_free_port() for _ in self.names]
        self.token = token
        self.procs: list[subprocess.Popen | None] = [None] * members
        self.initial = ",".join(f"{n}=http://127.0.0.1:{p}"
                                for n, p in zip(self.names, self.peer_ports))

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def start(self, i: int | None = None) -> None:
        """Start member i (None: all of them); returns when the cluster answers."""
        for j in (range(len(self.names)) if i is None else [i]):
            if self.procs[j] is not None:
                continue
            data = self.dir / self.names[j]
            data.mkdir(parents=True, exist_ok=True)
            peer = f"http://127.0.0.1:{self.peer_ports[j]}"
            client = f"http://127.0.0.1:{self.client_ports[j]}"
            log = open(self.dir / f"{self.names[j]}.log", "ab")  # noqa: SIM115 (kept by Popen)
            self.procs[j] = subprocess.Popen(
                [self.binary, "--name", self.names[j], "--data-dir", str(data),
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--initial-cluster", self.initial, "--initial-cluster-token", self.token,
                 "--initial-cluster-state", "new", "--heartbeat-interval", "50",
                 "--election-timeout", "500", "--log-level", "warn"],
                stdout=log, stderr=log, start_new_session=True)
            log.close()
        if i is None:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until a linearizable write succeeds (a leader is elected and has a quorum)."""
        from leither_host.ledger.etcdlog import EtcdLog, LogUnavailable

        log = EtcdLog([e for e, p in zip(self.endpoints, self.procs) if p is not None],
                      "/leither/ready", timeout=1.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                log.put(log.key("ping"), b"1")
                return
            except LogUnavailable:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd cluster in {self.dir} did not become ready "
                                       f"(see its *.log)") from None
                time.sleep(0.1)

    def stop(self, i: int, kill: bool = False) -> None:
        proc = self.procs[i]
        if proc is None:
            return
        self.procs[i] = None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def close(self) -> None:
        for i in range(len(self.procs)):
            self.stop(i)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

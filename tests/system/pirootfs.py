# A Raspberry Pi Zero's userland on this machine: Debian stable for armel (the Debian port
# that runs on the Zero's ARMv6 core), made by mmdebstrap and run through qemu-user-static's
# binfmt handler. The rootfs is built once into build/pizero-rootfs.tar (about two minutes;
# the packages the Pi bundle's install.sh would ask apt for are included, so that is one
# step) and unpacked fresh for each use, so every run installs on a clean Pi.
#
# Used by tests/system/test_pizero_emul.py and bench/pizero.py. Root only (chroot, mounts).
"""An emulated Pi Zero userland: build, unpack, run commands and services in it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from leither_host.pibundle import OS_PACKAGES

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "pizero-rootfs.tar"
STAMP = REPO / "build" / "pizero-rootfs.json"  # what the cached tarball was built from
SUITE = "stable"
ARCH = "armel"
# install.sh's own tools beyond the essential set: useradd, groupadd, usermod.
INCLUDE = (*OS_PACKAGES, "passwd")
# Manuals, docs and translations are left out: a quarter less to unpack for every run.
SLIM = tuple(f"--dpkgopt={opt}" for opt in (
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*"))
BUILD_TIMEOUT_S = 1800  # mmdebstrap: ~2 min here; generous for a slow mirror or a busy box
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_ARM = ("/usr/libexec/qemu-binfmt/arm-binfmt-P", "/usr/bin/qemu-arm-static")
# What the chroot needs from this machine to reach the package registries, as the host does.
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
HOST_FILES = ("/etc/resolv.conf", HOST_CA, "/etc/pip.conf")
HOST_DIRS = ("/etc/xdg/pip",)
STOP_TIMEOUT_S = 30  # SIGTERM to exit under emulation before SIGKILL


def debian_mirror() -> str | None:
    """The Debian archive URL this machine's apt uses (deb822 .sources or one-line .list)."""
    files = [Path("/etc/apt/sources.list")]
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["URIs:"]:
                urls = words[1:]
            elif words[:1] == ["deb"]:
                urls = [w for w in words[1:] if "://" in w][:1]
            else:
                continue
            for url in urls:
                if url.rstrip("/").endswith("/debian"):  # the archive, not -security or others
                    return url
    return None


def _qemu_arm() -> str | None:
    return next((q for q in QEMU_ARM if os.path.exists(q)), None)


def unavailable() -> str | None:
    """Why this machine cannot run the emulated Pi, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (mmdebstrap, chroot, mounts)"
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("arch-test", "arch-test"),
                          ("chroot", "coreutils")):
        if not shutil.which(tool):
            return f"{tool} not installed (apt-get install {package})"
    if _qemu_arm() is None:
        return "qemu-arm not installed (apt-get install qemu-user-static binfmt-support)"
    if debian_mirror() is None:
        return "no Debian mirror in /etc/apt/sources.list*"
    return ensure_binfmt()


def ensure_binfmt() -> str | None:
    """Mount binfmt_misc if needed and make sure ARM ELF binaries run through qemu-arm."""
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                       capture_output=True)
    if not (BINFMT / "register").exists():
        return "binfmt_misc cannot be mounted here"
    entry = BINFMT / "qemu-arm"
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-arm"], capture_output=True)
    if not entry.exists():
        # Register by hand: 32-bit little-endian ARM ELF executables (e_machine 40), the
        # interpreter opened now (F) so it works inside a chroot.
        magic = r"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00"
        mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
        try:
            (BINFMT / "register").write_text(f":qemu-arm:M::{magic}:{mask}:{_qemu_arm()}:F")
        except OSError as err:
            return f"cannot register qemu-arm with binfmt_misc: {err}"
    if "enabled" not in entry.read_text():
        entry.write_text("1")
    return None


def _recipe() -> dict[str, object]:
    return {"suite": SUITE, "arch": ARCH, "include": list(INCLUDE), "options": list(SLIM),
            "mirror": debian_mirror()}


def cached_rootfs() -> tuple[Path, float | None]:
    """(the rootfs tarball, seconds it took to build now or None if it was cached)."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait and reuse its work
        try:
            if CACHE.exists() and json.loads(STAMP.read_text())["recipe"] == _recipe():
                return CACHE, None
        except (OSError, ValueError, KeyError):
            pass
        tmp = CACHE.with_name(CACHE.name + ".tmp.tar")
        started = time.monotonic()
        proc = subprocess.run(
            ["mmdebstrap", f"--arch={ARCH}", "--variant=apt", "--include=" + ",".join(INCLUDE),
             *SLIM, SUITE, str(tmp), str(debian_mirror())],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"mmdebstrap failed: {proc.stderr[-2000:]}")
        seconds = time.monotonic() - started
        os.replace(tmp, CACHE)
        STAMP.write_text(json.dumps({"recipe": _recipe(), "build_seconds": round(seconds, 1),
                                     "bytes": CACHE.stat().st_size}))
        return CACHE, seconds


class Pi:
    """A fresh copy of the rootfs at `root`, /proc mounted, this host's registry access copied
    in; run() and start() execute inside it. Use as a context manager: leaving it stops what
    start() began, unmounts and deletes the copy."""

    def __init__(self, tarball: Path, root: Path) -> None:
        self.tarball = tarball
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Pi:
        self.root.mkdir(parents=True)
        try:
            # GNU tar as root keeps owners, modes and the device nodes (faster than tarfile).
            subprocess.run(["tar", "-xf", str(self.tarball), "-C", str(self.root)], check=True)
            for name in HOST_FILES:
                if os.path.exists(name):
                    self.copy_in(Path(name), name)
            if os.path.exists(HOST_CA):
                # Also where update-ca-certificates (run when apt installs ca-certificates)
                # takes local roots from, so a rebuilt bundle still trusts what the host does.
                self.copy_in(Path(HOST_CA), "/usr/local/share/ca-certificates/host-roots.crt")
            for name in HOST_DIRS:
                if os.path.isdir(name):
                    shutil.copytree(name, self.path(name), dirs_exist_ok=True)
            subprocess.run(["mount", "-t", "proc", "proc", str(self.root / "proc")], check=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def copy_in(self, src: Path, inside: str) -> None:
        dst = self.path(inside)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)  # resolv.conf may be a dangling symlink in the image
        shutil.copyfile(src, dst)

    def ids(self, user: str) -> tuple[int, int, list[int]]:
        """(uid, gid, supplementary gids) of a user of the Pi, from its own files."""
        passwd = {f[0]: f for f in (line.split(":") for line in
                                    self.path("/etc/passwd").read_text().splitlines())}
        uid, gid = int(passwd[user][2]), int(passwd[user][3])
        groups = [gid]
        for line in self.path("/etc/group").read_text().splitlines():
            fields = line.split(":")
            if user in fields[3].split(",") and int(fields[2]) not in groups:
                groups.append(int(fields[2]))
        return uid, gid, groups

    def argv(self, command: list[str], user: str | None, env: dict[str, str]) -> list[str]:
        """chroot (as user, with that user's groups) + a clean environment + command."""
        argv = ["chroot"]
        if user is not None:
            uid, gid, groups = self.ids(user)
            argv += [f"--userspec={uid}:{gid}", "--groups=" + ",".join(map(str, groups))]
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        if user is None:
            base["HOME"] = "/root"
        return argv + [str(self.root), "env", "-i",
                       *(f"{k}={v}" for k, v in {**base, **env}.items()), *command]

    def run(self, command: list[str], user: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command, user, env or {}), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, command: list[str], log: Path, user: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(self.argv(command, user, env or {}), stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_service(self, log: Path, extra: tuple[str, ...] = ("--no-mdns",),
                      env: dict[str, str] | None = None, timeout: float = 300
                      ) -> tuple[subprocess.Popen[bytes], float]:
        """Start the installed leither.service as systemd would (its ExecStart as its User,
        with its Environment and UMask 077) plus `extra` arguments; gpiozero gets mock pins
        (no GPIO under qemu). Returns (process, seconds to the node's ready line)."""
        argv, user, unit_env = service_command(
            self.path("/etc/systemd/system/leither.service").read_text())
        unit_env["GPIOZERO_PIN_FACTORY"] = "mock"
        unit_env.update(env or {})
        started = time.monotonic()
        proc = self.start(["/bin/sh", "-c", 'umask 077; exec "$@"', "sh", *argv, *extra], log,
                          user=user, env=unit_env)
        while time.monotonic() - started < timeout:
            text = log.read_text(errors="replace")
            if " ready" in text:
                return proc, time.monotonic() - started
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited: {text}")
            time.sleep(0.1)
        raise RuntimeError(f"no ready line within {timeout} s: {log.read_text()}")

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM (a service's stop), then SIGKILL if it lingers; the exit status."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.procs = []
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in reversed([m for m in mounts if m == str(self.root) or
                               m.startswith(str(self.root) + "/")]):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
        still = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                 if line.split()[1].startswith(str(self.root) + "/")]
        if still:  # never delete through a mount (it would reach the host's /proc)
            raise RuntimeError(f"could not unmount {still}")
        shutil.rmtree(self.root, ignore_errors=True)


def service_command(unit_text: str) -> tuple[list[str], str | None, dict[str, str]]:
    """(ExecStart argv, User, Environment) of a systemd unit: how systemd would start it."""
    argv: list[str] = []
    user = None
    env: dict[str, str] = {}
    for line in unit_text.splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            argv = value.split()
        elif key == "User":
            user = value
        elif key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
    return argv, user, env

# The Raspberry Pi install bundle behind `leither flash --board pizero`: a tarball the owner
# copies to the Pi and runs install.sh from. It carries the node and nothing of the host tools:
#   leither_node-VERSION-py3-none-any.whl  the `leither` package alone (written here, no pip)
#   install.sh       OS packages first (python3-pycryptodome, python3-gpiozero), pip only for
#                    what the OS lacks; a system user; code under /opt/leither; state under
#                    /var/lib/leither (0700); idempotent, an upgrade keeps key, store, pairing
#   leither.service  the systemd unit, hardened (read-only system, no new privileges)
#   config.json      name, claim token, RPC port, Wi-Fi (mode 0600: it holds secrets)
"""The Pi Zero install bundle: node-only wheel, install.sh, systemd unit, config."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import leither
from leither_host.build import FIRMWARE, REPO, board_config
from leither_host.flash import FlashResult, make_config, remember_token

BOARD = "pizero"
DIST_NAME = "leither_node"  # the wheel's distribution name (PEP 427 escaping: no dash)
PREFIX = "/opt/leither"  # code: lib/ (the wheel, unpacked) and deps/ (pip, only if needed)
STATE = "/var/lib/leither"  # the node's root: key, owner, store, pairing, config
SERVICE_USER = "leither"
# What install.sh asks apt for when the Pi lacks it (then pip, for what the OS has not).
OS_PACKAGES = ("python3", "python3-gpiozero", "python3-pycryptodome")
# Entries in the wheel and tarball carry this time (the zip format's earliest), so the same
# sources give the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)

SYSTEMD_UNIT = f"""[Unit]
Description=Leither node
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
# A system user of its own; install.sh puts it in the `gpio` group for the button and LED.
User={SERVICE_USER}
Group={SERVICE_USER}
Environment=PYTHONPATH={PREFIX}/lib:{PREFIX}/deps
Environment=PYTHONUNBUFFERED=1
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart=/usr/bin/python3 -m leither --root {STATE} --board {BOARD}
Restart=on-failure
RestartSec=5
# SIGTERM makes the node say goodbye on mDNS and close its stores.
KillSignal=SIGTERM
TimeoutStopSec=15
UMask=0077
# Hardening: everything read-only but the node's state, no privilege gain, no kernel knobs.
# /dev and /sys stay reachable: gpiozero drives the pins through /dev/gpiochip*, /dev/gpiomem
# or /sys/class/gpio, depending on the pin library the OS ships.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={STATE}
ProtectHome=yes
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
CapabilityBoundingSet=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK

[Install]
WantedBy=multi-user.target
"""

INSTALL_SH = f"""#!/bin/sh
# Installs or upgrades the Leither node on a Raspberry Pi. Run as root from the unpacked
# bundle: sudo ./install.sh. Safe to run again: an upgrade replaces the code and keeps the
# node's key, store, owner and pairing under {STATE}.
set -eu
umask 022
cd "$(dirname "$0")"
PY=/usr/bin/python3
PREFIX={PREFIX}
STATE={STATE}
USER_NAME={SERVICE_USER}
UNIT=/etc/systemd/system/leither.service
say() {{ echo "leither: $*"; }}
# Importable as the node will see it: the OS's packages, then what pip put in $PREFIX/deps.
has() {{ [ -x "$PY" ] && PYTHONPATH="$PREFIX/deps" "$PY" -c "import $1" >/dev/null 2>&1; }}
has_crypto() {{ has Cryptodome.Cipher.AES || has Crypto.Cipher.AES; }}
[ "$(id -u)" -eq 0 ] || {{ echo "install.sh: run it as root (sudo ./install.sh)" >&2; exit 1; }}

# 1. Python and its libraries from the OS's own packages first (built for this CPU).
need=""
[ -x "$PY" ] || need="$need python3"
has gpiozero || need="$need python3-gpiozero"
has_crypto || need="$need python3-pycryptodome"
if [ -n "$need" ]; then
    say "installing OS packages:$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || say "apt-get update failed; trying with the package lists at hand"
    for pkg in $need; do
        apt-get install -y -q --no-install-recommends "$pkg" || say "the OS has no $pkg"
    done
fi
[ -x "$PY" ] || {{ echo "install.sh: no $PY and apt-get could not install it" >&2; exit 1; }}

# 2. pip only for what the OS lacks, into $PREFIX/deps (never the system's site-packages).
pip_need=""
has gpiozero || pip_need="$pip_need gpiozero"
has_crypto || pip_need="$pip_need pycryptodome"
for pkg in $pip_need; do
    "$PY" -m pip --version >/dev/null 2>&1 \\
        || apt-get install -y -q --no-install-recommends python3-pip >/dev/null 2>&1 || true
    "$PY" -m pip install -q --upgrade --target "$PREFIX/deps" "$pkg" \\
        || say "pip could not install $pkg"
done
has_crypto || say "no pycryptodome: the node runs its pure-Python crypto (slower)"

# 3. The service's own user; GPIO through the gpio group (Raspberry Pi OS has it).
getent group gpio >/dev/null || groupadd --system gpio
getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
getent passwd "$USER_NAME" >/dev/null || useradd --system --gid "$USER_NAME" \\
    --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \\
    --comment "Leither node" "$USER_NAME"
usermod -a -G gpio "$USER_NAME"

# 4. The code: the wheel unpacked and byte-compiled beside the live copy, then swapped in.
if [ -d /run/systemd/system ] && systemctl is-active -q leither.service; then
    systemctl stop leither.service  # no half-old, half-new imports in a running node
fi
mkdir -p "$PREFIX"
rm -rf "$PREFIX/lib.new" "$PREFIX/lib.old"
"$PY" -m zipfile -e ./{DIST_NAME}-*.whl "$PREFIX/lib.new"
"$PY" -m compileall -q "$PREFIX/lib.new" >/dev/null
[ ! -d "$PREFIX/lib" ] || mv "$PREFIX/lib" "$PREFIX/lib.old"
mv "$PREFIX/lib.new" "$PREFIX/lib"
rm -rf "$PREFIX/lib.old" "$PREFIX/venv"  # venv: the layout of bundles before 0.1

# 5. State: the node's alone. A claimed node keeps its config (name, port, Wi-Fi); a node
#    nobody owns yet takes this bundle's, so its claim token is the one `leither flash` printed.
if [ -d "$STATE" ] && [ "$(stat -c %u "$STATE")" != "$(id -u "$USER_NAME")" ]; then
    chown -R "$USER_NAME:$USER_NAME" "$STATE"  # kept by a root-run node of older bundles
fi
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$STATE"
if [ -f "$STATE/config.json" ] && [ -f "$STATE/owner.pub" ]; then
    say "claimed node: keeping $STATE/config.json"
else
    install -m 0600 -o "$USER_NAME" -g "$USER_NAME" config.json "$STATE/config.json"
fi

# 6. The service.
install -D -m 0644 leither.service "$UNIT"
name=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' \\
    "$STATE/config.json")
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable -q leither.service
    systemctl restart leither.service
    say "node $name is running (journalctl -u leither -f shows its log)"
else
    say "systemd is not running here: start the node with $UNIT's ExecStart"
fi
if [ -f "$STATE/owner.pub" ]; then
    say "installed; the node keeps its owner"
else
    say "installed; from your computer: leither claim $name"
fi
"""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def node_sources(exclude_ports: set[str]) -> list[tuple[str, bytes]]:
    """(path in the wheel, content) of every module of the `leither` package a Pi runs."""
    out = []
    for path in sorted((FIRMWARE / "leither").rglob("*.py")):
        rel = path.relative_to(FIRMWARE)
        if rel.parts[:2] == ("leither", "port") and path.stem in exclude_ports:
            continue
        out.append((rel.as_posix(), path.read_bytes()))
    return out


def node_wheel(out_dir: Path, exclude_ports: set[str]) -> Path:
    """A wheel (PEP 427) of the `leither` package alone: the node, no host tools.

    Written directly (a zip with a dist-info) rather than by pip from setup.cfg, whose
    project is the node and the host tools together."""
    version = leither.FIRMWARE_VERSION
    info = f"{DIST_NAME}-{version}.dist-info"
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        "Name: leither-node",
        f"Version: {version}",
        "Summary: Leither node for CPython boards (Raspberry Pi): storage, RPC, mDNS, pairing",
        "License: MIT",
        "Requires-Python: >=3.11",
        "Provides-Extra: fast",
        'Requires-Dist: pycryptodome>=3.15; extra == "fast"',
        "Provides-Extra: pi",
        'Requires-Dist: gpiozero>=1.6; extra == "pi"',
        "",
        "The node of Leither for boards; it runs without pycryptodome, slower.",
        ""])
    wheel_meta = ("Wheel-Version: 1.0\nGenerator: leither_host.pibundle\n"
                  "Root-Is-Purelib: true\nTag: py3-none-any\n")
    entries = node_sources(exclude_ports) + [
        (f"{info}/METADATA", metadata.encode()), (f"{info}/WHEEL", wheel_meta.encode())]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    target = out_dir / f"{DIST_NAME}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in entries:
            item = zipfile.ZipInfo(name, _EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(item, data)
    return target


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    item = tarfile.TarInfo(name)
    item.size = len(data)
    item.mode = mode
    item.mtime = 0
    item.uname = item.gname = "root"
    tar.addfile(item, io.BytesIO(data))


def write_bundle(name: str, token: str, ssid: str | None, password: str | None,
                 rpc_port: int, out_dir: Path | None = None) -> FlashResult:
    """dist/pizero-NAME.tar.gz: the node wheel, install.sh, the systemd unit, config.json."""
    config = board_config(BOARD)
    exclude = set(config.get("manifest", {}).get("exclude_ports", []))
    out_dir = out_dir or REPO / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    top = f"leither-{name}"
    target = out_dir / f"pizero-{name}.tar.gz"
    tmp = target.with_name(target.name + ".tmp")
    wheel = node_wheel(out_dir, exclude)
    try:
        files = [
            (f"{top}/{wheel.name}", wheel.read_bytes(), 0o644),
            (f"{top}/install.sh", INSTALL_SH.encode(), 0o755),
            (f"{top}/leither.service", SYSTEMD_UNIT.encode(), 0o644),
            (f"{top}/config.json", json.dumps(make_config(
                BOARD, name, token, ssid, password, rpc_port), indent=1).encode(), 0o600),
        ]
    finally:
        wheel.unlink()
    with tarfile.open(tmp, "w:gz") as tar:
        dir_item = tarfile.TarInfo(top)
        dir_item.type = tarfile.DIRTYPE
        dir_item.mode = 0o755
        tar.addfile(dir_item)
        for member, data, mode in files:
            _add(tar, member, data, mode)
    os.replace(tmp, target)
    remember_token(name, token)
    return FlashResult(board=BOARD, name=name, claim_token=token, files=len(files),
                       bytes=target.stat().st_size, verified=0, target=str(target))

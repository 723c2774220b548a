#!/usr/bin/env bash
# Installs the Debian packages that the tests and benchmarks use, when we are root.
# Without root it only reports what is missing: those tests skip with a clear reason.
#   network tests:     socat iproute2 nftables avahi dbus syncthing
#   32-bit MicroPython (the ESP32 stand-in, built from ../shared/micropython): gcc-multilib make
#   Pi Zero under emulation (armel rootfs): mmdebstrap arch-test qemu-user-static binfmt-support
#   bookkeepers: etcd-server;  dashboard in a real browser: chromium chromium-driver
set -u
want=(socat iproute2 nftables avahi-daemon avahi-utils dbus syncthing
      gcc-multilib make mmdebstrap arch-test qemu-user-static binfmt-support
      etcd-server chromium chromium-driver)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not root (or no apt): missing ${missing[*]}; their tests will skip" >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# One package at a time after a failed batch, so one missing package skips only its own tests.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    for pkg in "${missing[@]}"; do
        apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 \
            || echo "system-deps: apt-get could not install $pkg; the tests that need it skip" >&2
    done
}
exit 0

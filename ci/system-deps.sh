#!/usr/bin/env bash
# Installs the Debian packages that the network tests and benchmarks use, when we are root.
# Without root it only reports what is missing: those tests skip with a clear reason.
set -u
want=(socat:socat ip:iproute2 nft:nftables tc:iproute2 avahi-daemon:avahi-daemon
      avahi-browse:avahi-utils dbus-daemon:dbus syncthing:syncthing)
missing=()
for pair in "${want[@]}"; do
    cmd=${pair%%:*}; pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not root (or no apt): missing ${missing[*]}; their tests will skip" >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "system-deps: apt-get failed; network tests that need ${missing[*]} will skip" >&2
exit 0

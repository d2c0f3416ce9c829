#!/bin/sh
# Install everything P⁴ needs into ./.venv, on a fresh Debian machine (run as root, or with sudo).
# Idempotent: a second run only checks.  Used by both README commands and so by .ci/run.
set -eu
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=""
command -v tor >/dev/null 2>&1 || [ -x /usr/sbin/tor ] || missing="$missing tor"
python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
# The NAT and mobility lab (tools/netlab): iproute2 (ip netns), iptables NAT rules, conntrack,
# coturn (STUN/TURN); gcc + libnetfilter-queue-dev + python3-dev build NetfilterQueue, its
# packet delayer (this kernel has no netem).
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have ip || missing="$missing iproute2"
have iptables-restore || missing="$missing iptables"
have conntrack || missing="$missing conntrack"
have turnserver || missing="$missing coturn"
have gcc || missing="$missing gcc"
# The local API's shell client (examples/clients/p4client.sh), which a test drives.
have curl || missing="$missing curl"
have jq || missing="$missing jq"
# Headless Chromium for the TypeScript port's live interop test (tests/test_ts_live.py, driven by
# playwright-core, which downloads no browser).
have chromium || missing="$missing chromium"
[ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || missing="$missing libnetfilter-queue-dev"
python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' \
    2>/dev/null || missing="$missing python3-dev"
if [ -n "$missing" ]; then
    echo "bootstrap: installing Debian packages:$missing"
    # Another apt/dpkg (unattended-upgrades on a fresh machine) may hold the lock: wait for it
    # up to 5 minutes instead of failing.
    APT="apt-get -o DPkg::Lock::Timeout=300"
    $SUDO $APT update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO $APT install -y -qq --no-install-recommends $missing
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    python3 -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last run (a second run only checks).
# The editable build's setuptools prints an informational "Editable installation" notice as a
# UserWarning; hide warnings of that category in the build (errors still show).
stamp=.venv/.p4-pyproject.sha256
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import p4ref' 2>/dev/null
then
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    PYTHONWARNINGS=ignore::UserWarning \
        .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi
echo "bootstrap: ready ($(.venv/bin/python --version), $(tor --version 2>/dev/null | head -n 1 || /usr/sbin/tor --version | head -n 1))"

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
if [ -n "$missing" ]; then
    echo "bootstrap: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "bootstrap: ready ($(.venv/bin/python --version), $(tor --version 2>/dev/null | head -n 1 || /usr/sbin/tor --version | head -n 1))"

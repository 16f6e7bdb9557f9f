#!/usr/bin/env bash
# Installs moto's S3 server (moto_server), pinned, into the git-ignored venv .tools/venv: the second S3
# implementation the storage and scale-out tests run against (the first is s3rver, from npm).
# Quick when already installed: the venv's moto version is checked first. Needs python3-venv (scripts/test.sh
# installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
VENV="$PWD/.tools/venv"

if [ -x "$VENV/bin/moto_server" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]; then
  exit 0
fi
echo "installing moto[server]==$MOTO_VERSION into .tools/venv"
mkdir -p "$PWD/.tools"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"

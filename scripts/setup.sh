#!/usr/bin/env bash
# Installs everything imnet and its tests need on a fresh Debian machine (run as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# WordNet 3.0 for nltk offline; Chromium for the browser tests; PostgreSQL server for the db tests.
APT_PKGS="wordnet-base wordnet-sense-index chromium chromium-driver fonts-dejavu-core postgresql"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
PY=${PYTHON:-python3}
# The CPU build of torch first, so the project's torch requirement is already met.
$PY -m pip install -q --disable-pip-version-check "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check -e ".[dev]"
$PY -m imnet setup --no-download

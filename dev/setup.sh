#!/usr/bin/env bash
# Installs what building and testing Tarn needs, idempotently:
#   - etcd (Debian etcd-server), which the state-store and failover tests
#     start on loopback ports;
#   - protoc (Debian protobuf-compiler), used to regenerate and check the
#     checked-in protobuf code;
#   - with --python: a virtualenv in .venv with the client-test packages.
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=0
for a in "$@"; do
  case "$a" in
    --python) want_python=1 ;;
    *) echo "usage: dev/setup.sh [--python]" >&2; exit 2 ;;
  esac
done

command -v cargo >/dev/null || { echo "cargo is required: install Rust from rustup" >&2; exit 1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

if command -v dpkg >/dev/null; then
  apt_install protobuf-compiler etcd-server
fi

if [ "$want_python" -eq 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if ! .venv/bin/python -c 'import sys; sys.exit(0)' 2>/dev/null; then
    rm -rf .venv && python3 -m venv .venv
  fi
  stamp=.venv/.requirements.sha
  want=$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
    echo "$want" > "$stamp"
  fi
  # The notebook provider, installed the way users install it.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps ./clients/python
fi

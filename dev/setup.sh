#!/usr/bin/env bash
# Installs what building and testing Tarn needs, idempotently:
#   - etcd (Debian etcd-server), which the state-store and failover tests
#     start on loopback ports;
#   - protoc (Debian protobuf-compiler), used to regenerate and check the
#     checked-in protobuf code;
#   - with --python: a virtualenv in .venv with the client-test packages;
#   - with --kernels (implied by --python): bubblewrap, which confines
#     tarn-python kernels, and their environment in .kernel-env (a
#     virtualenv of the system's python3 with kernels/python/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=0
want_kernels=0
for a in "$@"; do
  case "$a" in
    --python) want_python=1; want_kernels=1 ;;
    --kernels) want_kernels=1 ;;
    *) echo "usage: dev/setup.sh [--python] [--kernels]" >&2; exit 2 ;;
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
  if [ "$want_kernels" -eq 1 ]; then
    apt_install bubblewrap python3-venv
  fi
fi

# The kernels' environment is made from the system's python3 (under /usr,
# readable by the unprivileged users kernels run as), not a user's own.
if [ "$want_kernels" -eq 1 ]; then
  kpy=/usr/bin/python3
  [ -x "$kpy" ] || kpy=$(command -v python3)
  if [ ! -x .kernel-env/bin/python ] || ! .kernel-env/bin/python -c 'import sys' 2>/dev/null; then
    rm -rf .kernel-env && "$kpy" -m venv .kernel-env
  fi
  kstamp=.kernel-env/.requirements.sha
  kwant=$(sha256sum kernels/python/requirements.txt clients/python/pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$kstamp" 2>/dev/null)" != "$kwant" ]; then
    .kernel-env/bin/pip install -q --disable-pip-version-check -r kernels/python/requirements.txt
    echo "$kwant" > "$kstamp"
  fi
  # The lake provider every kernel preloads.
  .kernel-env/bin/pip install -q --disable-pip-version-check --no-deps ./clients/python
  chmod -R a+rX .kernel-env
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
  # Azurite, the Azure Blob Storage emulator the object-store tests start.
  if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
    npm install --prefix .tools --no-audit --no-fund --loglevel=error azurite@3.37.0 >/dev/null
  fi
fi

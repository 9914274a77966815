#!/usr/bin/env bash
# Builds Tarn's container image around the binary already compiled
# (target/<profile>/tarn, `--target prebuilt`) on a base image made from
# Debian packages, because no image registry may be reachable; with
# --test, runs `tarn standalone` in it on the host's loopback and queries
# it over Flight SQL.
#
#   dev/image.sh [--test] [--profile debug|release] [--tag tarn:dev] [--kernels]
#
# Needs root (it installs docker.io and debootstrap, and starts dockerd if
# none runs). Users with a registry build the usual way: `docker build -t tarn .`
set -euo pipefail
cd "$(dirname "$0")/.."

test=0 profile=debug tag=tarn:dev kernels=0
while [ $# -gt 0 ]; do
  case "$1" in
    --test) test=1 ;;
    --profile) profile=$2; shift ;;
    --tag) tag=$2; shift ;;
    --kernels) kernels=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
base=local/debian-base:bookworm
target_dir=${CARGO_TARGET_DIR:-target}
binary=$target_dir/$profile/tarn
[ -x "$binary" ] || { echo "no $binary: build it first (cargo build -p tarn-cli)" >&2; exit 1; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  (dockerd >/tmp/tarn-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/tarn-dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  rootfs=$(mktemp -d /tmp/tarn-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  rm -rf "$rootfs"
fi

mkdir -p dist
cp "$binary" dist/tarn
docker build -q --target prebuilt \
  --build-arg RUNTIME_IMAGE="$base" --build-arg KERNELS="$kernels" \
  -t "$tag" . >/dev/null
rm -f dist/tarn
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"

[ "$test" = 1 ] || exit 0

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
flight=$(free_port) http=$(free_port) coord=$(free_port) metrics=$(free_port)
name=tarn-image-test-$$
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
# --network host: the container's loopback is the host's (never Docker's
# bridge addresses).
docker run -d --name "$name" --network host "$tag" standalone \
  --lake /home/tarn/lake --state-dir /home/tarn/state \
  --flight-addr "127.0.0.1:$flight" --http-addr "127.0.0.1:$http" \
  --coordinator-addr "127.0.0.1:$coord" --metrics-addr "127.0.0.1:$metrics" >/dev/null
for _ in $(seq 240); do
  curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
  [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || break
  sleep 0.5
done
if ! curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then
  docker logs "$name" 2>&1 | tail -40 >&2
  echo "tarn standalone in the image did not become ready" >&2
  exit 1
fi
[ "$(docker exec "$name" id -u)" = 10001 ] || { echo "the image does not run as uid 10001" >&2; exit 1; }
.venv/bin/python - "$flight" <<'PY'
import sys
import adbc_driver_flightsql.dbapi as flight_sql
with flight_sql.connect(f"grpc://127.0.0.1:{sys.argv[1]}", autocommit=True) as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) FROM demo.SigninLogs WHERE ResultType <> '0'")
    n = cur.fetchone()[0]
assert n > 0, n
print(f"the image's tarn standalone answered over Flight SQL: {n} failed sign-ins")
PY

#!/usr/bin/env bash
# hx-gateway's entry points (see README):
#   ./hx lab     bring up the Docker lab (gateway + two Ollama backends), deploy, verify
#   ./hx test    the full test suite: ruff, then pytest (unit and lab tests)
#   ./hx mutate  mutation testing of the pure-logic modules with the unit tests (bench/mutation.py)
# Each installs what it needs first: the Docker engine (lab, test), and the pinned control-node venv.
set -euo pipefail
cd "$(dirname "$0")"

ensure_docker() {
  if ! command -v dockerd >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  command -v debootstrap >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  if ! docker info >/dev/null 2>&1; then
    (nohup dockerd >/var/log/hx-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "dockerd did not start; see /var/log/hx-dockerd.log" >&2; exit 1
  fi
}

ensure_venv() {
  if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/requirements.installed; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --require-hashes -r requirements.txt
    cp requirements.txt .venv/requirements.installed
  fi
}

case "${1:-}" in
  lab)
    ensure_docker; ensure_venv
    exec .venv/bin/python -m lab.deploy "${@:2}" ;;
  test)
    ensure_docker; ensure_venv
    .venv/bin/ruff check .
    set +e; .venv/bin/python -m pytest "${@:2}"; rc=$?; set -e
    if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
    exit "$rc" ;;
  mutate)
    ensure_venv
    exec .venv/bin/python bench/mutation.py "${@:2}" ;;
  *)
    sed -n '2,6p' "$0"; exit 2 ;;
esac

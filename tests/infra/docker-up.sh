#!/usr/bin/env bash
# Make a Docker engine answer: do nothing when one already does, else start dockerd in the background.
#
# Idempotent and fast when the engine runs (one `docker info`). Tries the storage drivers in
# $MBCTL_DOCKERD_DRIVERS (default "overlay2 vfs": overlay2 works on ext4/xfs hosts, vfs on anything,
# slowly) and, if the daemon cannot program iptables (some sandboxes and nested VMs), retries without
# it: containers then have no NAT, so builds that download need --network host or a wheelhouse.
# Extra daemon flags: $MBCTL_DOCKERD_FLAGS. Log: $MBCTL_CACHE/dockerd.log (default <repo>/.cache).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${MBCTL_CACHE:-$ROOT/.cache}
LOG=$CACHE/dockerd.log
WAIT=${MBCTL_DOCKERD_WAIT:-60}

answers() { timeout 10 docker info >/dev/null 2>&1; }

if answers; then
  exit 0
fi
if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != unix:///var/run/docker.sock ]]; then
  echo "docker-up: DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  echo "docker-up: no dockerd on PATH (install docker.io) and no engine answers" >&2
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "docker-up: dockerd must be started as root (run: sudo $0), or set DOCKER_HOST" >&2
  exit 1
fi

mkdir -p "$CACHE"
# A daemon killed hard leaves its pid file behind, and a new one refuses to start over it.
if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi

# Waits until the engine answers (0), the daemon dies (1) or the time is up (2).
wait_for() {
  local pid=$1 deadline=$((SECONDS + WAIT))
  while ((SECONDS < deadline)); do
    answers && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 1
  done
  return 2
}

attempt() {
  local pid rc=0
  echo "docker-up: starting dockerd $* (log: $LOG)" >&2
  # shellcheck disable=SC2086 # MBCTL_DOCKERD_FLAGS is a word list on purpose
  setsid dockerd "$@" ${MBCTL_DOCKERD_FLAGS:-} >>"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$CACHE/dockerd.pid"
  wait_for "$pid" || rc=$?
  if ((rc == 2)); then
    kill "$pid" 2>/dev/null || true
    echo "docker-up: dockerd did not answer within ${WAIT}s; see $LOG" >&2
    exit 1
  fi
  return $rc
}

: >"$LOG"
for driver in ${MBCTL_DOCKERD_DRIVERS:-overlay2 vfs}; do
  if attempt --storage-driver="$driver"; then
    echo "docker-up: engine up (storage driver $driver)" >&2
    exit 0
  fi
  if grep -qiE 'iptables|nat table' "$LOG" && attempt --storage-driver="$driver" --iptables=false --ip-masq=false; then
    echo "docker-up: engine up (storage driver $driver, without iptables: no NAT for containers)" >&2
    exit 0
  fi
done
echo "docker-up: dockerd failed with every storage driver; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1

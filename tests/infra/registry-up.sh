#!/usr/bin/env bash
# Run a local image registry (Debian's docker-registry) on 127.0.0.1 for the push/lock tests.
#
#   tests/infra/registry-up.sh [PORT]          no auth, tests/infra/registry.yml (default port 5000)
#   tests/infra/registry-up.sh --auth [PORT]   basic auth, tests/infra/registry-auth.yml (default 5001);
#                                              credentials from $MBCTL_REGISTRY_USER/_PASSWORD
#   tests/infra/registry-up.sh --stop [PORT]   stop the registry this script started on PORT
#
# Idempotent: returns at once when our registry already answers on PORT with the same mode (and, with
# --auth, the same credentials; new credentials restart it, since distribution 2.8 reads htpasswd
# once). Storage and logs live under $MBCTL_CACHE/registry/PORT (default <repo>/.cache). The engine
# treats 127.0.0.0/8 registries as insecure by default, so plain HTTP needs no daemon setting.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=plain
case ${1:-} in
  --auth) MODE=auth; shift ;;
  --stop) MODE=stop; shift ;;
esac
PORT=${1:-$([[ $MODE == auth ]] && echo 5001 || echo 5000)}
STATE=${MBCTL_CACHE:-$ROOT/.cache}/registry/$PORT
PIDFILE=$STATE/registry.pid

ours_running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

stop() {
  if ours_running; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do ours_running || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
}

# HTTP status of GET /v2/ (000 when nothing listens).
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/v2/" || true; }

if [[ $MODE == stop ]]; then
  stop
  exit 0
fi

want=200
config=$HERE/registry.yml
fingerprint=plain
if [[ $MODE == auth ]]; then
  want=401
  config=$HERE/registry-auth.yml
  : "${MBCTL_REGISTRY_USER:?registry-up --auth needs MBCTL_REGISTRY_USER and MBCTL_REGISTRY_PASSWORD}"
  : "${MBCTL_REGISTRY_PASSWORD:?registry-up --auth needs MBCTL_REGISTRY_USER and MBCTL_REGISTRY_PASSWORD}"
  # Compared to decide whether a running registry has these credentials; never the password itself.
  fingerprint=$(printf '%s:%s' "$MBCTL_REGISTRY_USER" "$MBCTL_REGISTRY_PASSWORD" | sha256sum | cut -d' ' -f1)
fi

current=$(status)
if [[ $current != 000 ]]; then
  if ours_running && [[ $(cat "$STATE/fingerprint" 2>/dev/null) == "$fingerprint" ]]; then
    exit 0
  fi
  if ! ours_running; then
    if [[ $current == "$want" && $MODE == plain ]]; then
      exit 0 # someone else's registry without auth: as good as ours
    fi
    echo "registry-up: port $PORT answers (HTTP $current) but is not a registry this script started" >&2
    exit 1
  fi
  stop
fi

command -v docker-registry >/dev/null || {
  echo "registry-up: docker-registry is not installed (apt-get install docker-registry)" >&2
  exit 1
}
mkdir -p "$STATE/storage"

htpasswd_line() {
  if command -v htpasswd >/dev/null; then
    htpasswd -nbB "$MBCTL_REGISTRY_USER" "$MBCTL_REGISTRY_PASSWORD" | head -n 1
  else
    # distribution accepts only bcrypt; glibc's crypt(3) makes it where apache2-utils is missing.
    python3 -W ignore -c 'import crypt, os, sys
print(os.environ["MBCTL_REGISTRY_USER"] + ":" + crypt.crypt(os.environ["MBCTL_REGISTRY_PASSWORD"], crypt.mksalt(crypt.METHOD_BLOWFISH)))'
  fi
}

env_vars=(
  "REGISTRY_HTTP_ADDR=127.0.0.1:$PORT"
  "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$STATE/storage"
)
if [[ $MODE == auth ]]; then
  (umask 077 && htpasswd_line >"$STATE/htpasswd")
  env_vars+=("REGISTRY_AUTH_HTPASSWD_PATH=$STATE/htpasswd")
fi

env "${env_vars[@]}" setsid docker-registry serve "$config" >"$STATE/registry.log" 2>&1 </dev/null &
echo $! >"$PIDFILE"
echo "$fingerprint" >"$STATE/fingerprint"
for _ in $(seq 100); do
  if [[ $(status) == "$want" ]]; then
    exit 0
  fi
  ours_running || break
  sleep 0.1
done
echo "registry-up: registry on 127.0.0.1:$PORT did not come up; last lines of $STATE/registry.log:" >&2
tail -n 20 "$STATE/registry.log" >&2
stop
exit 1

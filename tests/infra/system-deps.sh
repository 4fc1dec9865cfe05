#!/usr/bin/env bash
# Installs the Debian packages the container and Slurm tests use, only those missing (needs root; a no-op when present).
set -euo pipefail
want=(docker.io docker-registry docker-compose debootstrap apache2-utils)
# the Slurm backend's tests: a one-node cluster (slurm-up.sh) and Podman as a container runtime
want+=(slurm-wlm munge podman catatonit)
# headless chromium renders the HTML report in tests/test_report_html.py
want+=(chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

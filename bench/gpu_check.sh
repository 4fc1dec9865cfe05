#!/usr/bin/env bash
# The GPU check on a lent machine: install the wheels carried in .whl/ (pydantic and whatever the
# machine's python lacks), then run bench/gpu_check.py with the python that holds CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
	python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
	export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
exec python3 bench/gpu_check.py --python python3 "$@"

# mbctl: `make run` runs the smoke suite end to end; `make test` runs every test this machine can run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MBCTL := $(VENV)/bin/mbctl
# The CPU torch wheel (on local disk here); GPU sites pick their own build, e.g. TORCH_SPEC=torch==2.5.1
TORCH_SPEC ?= torch==2.13.0
SUITE ?= smoke
BACKEND ?= docker
PYTEST_ARGS ?=
# The benchmark catalogue's frameworks (transformers, diffusers, lightning, torch-geometric, brax...)
# live apart from the orchestrator's venv: the local backend runs benchmarks with its interpreter.
BENCH_VENV ?= .venv-bench
BENCH_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# containers: the CPU images are built offline on a debootstrap base, from a wheelhouse, trusting the host CAs
WHEELHOUSE ?= .cache/wheelhouse
BASE_IMAGE_CPU ?= mbctl-test/python-base:bookworm
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
# pip matches --platform tags exactly: list the glibc baselines wheels are published for
WHEEL_PLATFORMS ?= manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64

.PHONY: venv bench-venv run containers test test-unit lint typecheck bench system docker-up clean
.PHONY: slurm-up

$(VENV)/.installed: pyproject.toml benchmarks/benchkit/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[docker,kubernetes,nvidia,local,test]" -e benchmarks/benchkit
	touch $@

venv: $(VENV)/.installed

$(BENCH_VENV)/.installed: benchmarks/requirements-bench.txt benchmarks/benchkit/pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q $(BENCH_TORCH_SPEC)
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/requirements-bench.txt -e benchmarks/benchkit
	touch $@

## bench-venv: the benchmark catalogue's environment (about 7 GB), used by tests/catalogue
bench-venv: $(BENCH_VENV)/.installed

## run: set up and run the smoke suite, printing the scored report: in containers (CPU images
## built on first use) when a Docker engine can be had, else as local processes (BACKEND=local forces it)
run: venv
	@if [ "$(BACKEND)" != local ] && $(MAKE) --no-print-directory containers; then \
		$(MBCTL) run --suite $(SUITE) --vendor cpu --backend docker; \
	else \
		echo "make run: using the local backend"; \
		$(MBCTL) run --suite $(SUITE) --backend local; \
	fi

$(WHEELHOUSE)/.ready: $(VENV)/.installed
	mkdir -p $(WHEELHOUSE)
	$(PY) -m pip download -q --dest $(WHEELHOUSE) --only-binary=:all: --implementation cp \
		--python-version 3.11 $(foreach p,$(WHEEL_PLATFORMS),--platform $(p)) "$(TORCH_SPEC)" numpy jax jaxlib
	touch $@

## containers: start dockerd and build the suite's CPU images (offline, on a debootstrap base)
containers: venv docker-up $(WHEELHOUSE)/.ready
	bash tests/infra/base-image.sh $(BASE_IMAGE_CPU)
	$(MBCTL) build --vendor cpu --suite $(SUITE) --base-image cpu=$(BASE_IMAGE_CPU) \
		$(if $(wildcard $(CA_BUNDLE)),--ca-bundle $(CA_BUNDLE)) --wheelhouse $(WHEELHOUSE)

## system: the Debian packages the container tests need (docker engine, registry, compose, debootstrap)
system:
	bash tests/infra/system-deps.sh

## docker-up: start the Docker engine (when its socket is absent) and the local test registry
docker-up: system
	bash tests/infra/docker-up.sh

## slurm-up: start munged, slurmctld and slurmd (a one-node CPU cluster) for the Slurm tests
slurm-up: system
	bash tests/infra/slurm-up.sh

## test: set up and pass every test this machine can run (unit, docker, k8s, slurm; gpu when present)
test: venv bench-venv docker-up slurm-up
	$(PY) -m pytest $(PYTEST_ARGS)

## test-unit: the fast layer only (no Docker)
test-unit: venv
	$(PY) -m pytest -m "not docker and not slow and not slurm" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check orchestrator tests benchmarks bench
	$(VENV)/bin/ruff format --check orchestrator tests benchmarks bench

typecheck: venv
	$(VENV)/bin/mypy

## bench: the speed targets (CLI start-up, parser lines/s, local-backend overhead)
bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .cache runs build *.egg-info

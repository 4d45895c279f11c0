# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests drive as real peers: ffmpeg (RTMP client), PostgreSQL (server),
# Chromium (the browser tests drive it through Playwright; Playwright's own download is not used),
# redis-server (the chat's multi-process test shares rooms through it), openssl (the RTMPS tests
# make their certificates with it), and the cluster's engines (issue 15): haproxy in front of RTMP,
# Varnish in front of HLS, and Prometheus' promtool to check the alert rules in config/.
TEST_DEBS := ffmpeg postgresql chromium redis-server openssl nginx libnginx-mod-rtmp \
	haproxy varnish prometheus curl systemd
CHROMIUM := /usr/bin/chromium
# hls.js comes from npm (package-lock.json pins it) and is served by us, never from a CDN.
HLS_JS := webapp/static/vendor/hls.min.js
# uPlot draws the analytics dashboard's charts; vendored the same way.
UPLOT := webapp/static/vendor/uPlot.iife.min.js webapp/static/vendor/uPlot.min.css
NPM_STAMP := node_modules/.package-lock.json
BENCH_DEBS := ffmpeg nginx libnginx-mod-rtmp wrk

.PHONY: run test test-unit lint typecheck deps lock frontend test-deps bench-deps bench clean \
	cluster-demo

# Every Python package, the installer and build tools included, is pinned in requirements.lock
# (made by `make lock` with uv from pyproject.toml): a new machine installs exactly what CI ran.
LOCK := requirements.lock

# setup.py builds the one compiled module (the RTMP chunk layer, mediaserver/rtmp/_chunks.c)
# in place; editing its source re-runs the install, which rebuilds it.
$(VENV)/.installed: pyproject.toml setup.py mediaserver/rtmp/_chunks.c $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c $(LOCK) pip setuptools wheel
	$(PY) -m pip install --no-build-isolation -c $(LOCK) -e '.[test]'
	touch $@

deps: $(VENV)/.installed

# Re-resolve the lock after changing pyproject.toml, or to take newer releases
# (`make lock UPGRADE=1`). One universal resolution for every platform of Python 3.11+.
lock:
	$(PY) -m pip install -c $(LOCK) uv
	$(VENV)/bin/uv pip compile --universal --fork-strategy fewest --python-version 3.11 \
		--extra test $(if $(UPGRADE),--upgrade) --no-header -q \
		-o $(LOCK) pyproject.toml requirements-build.in

# npm ci only when package.json/package-lock.json changed since the last install.
$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends nodejs npm; }
	npm ci --no-audit --no-fund
	@touch $@

$(HLS_JS): $(NPM_STAMP)
	@mkdir -p $(@D)
	cp node_modules/hls.js/dist/hls.min.js $@

$(UPLOT): $(NPM_STAMP)
	@mkdir -p $(@D)
	cp node_modules/uplot/dist/$(@F) $@

frontend: $(HLS_JS) $(UPLOT)

run: deps frontend
	$(VENV)/bin/aethex serve

# The whole cluster of issue 15 on this machine (Redis, PostgreSQL, SeaweedFS as S3, two origins,
# a web node, haproxy in front of RTMP, Varnish in front of the web node), started by the module
# the cluster tests use; prints the URLs, Ctrl-C stops everything. DIR=path keeps its files there.
cluster-demo: deps test-deps frontend
	$(PY) -m benchmarks.lib.cluster $(if $(DIR),--dir $(DIR))

test-deps:
	@if ! command -v ffmpeg >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
			|| [ ! -x $(CHROMIUM) ] || ! command -v redis-server >/dev/null \
			|| ! command -v openssl >/dev/null || ! command -v haproxy >/dev/null \
			|| ! command -v varnishd >/dev/null || ! command -v promtool >/dev/null \
			|| ! command -v curl >/dev/null || ! command -v systemd-analyze >/dev/null \
			|| [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(TEST_DEBS); \
	fi

# Lint and type errors fail the run before the suite starts (prerequisites run in order).
# Two worker processes, a test file per worker (its module fixtures run once): most of the
# suite waits on real servers, ffmpeg and Chromium in real time, so two files at once keep
# the whole under CI's 20 minutes; the tests wait for events, never for durations, so a
# slower share of the CPU only makes them wait longer.
test: deps test-deps frontend lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadfile

# The fast loop: parsers, planners, packager, settings, storage (no servers, no browser), one
# worker process per core; a test file stays in one worker, so its module fixtures run once.
test-unit: deps test-deps
	$(PY) -m pytest -q -n auto --dist loadfile tests/unit

# ruff and mypy are configured in pyproject.toml.
PY_TREE := mediaserver transcode storage webapp tests benchmarks

lint: deps
	$(VENV)/bin/ruff check $(PY_TREE)
	$(VENV)/bin/ruff format --check $(PY_TREE)

typecheck: deps
	$(VENV)/bin/mypy mediaserver transcode storage webapp

bench-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v wrk >/dev/null \
			|| [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(BENCH_DEBS); \
	fi

bench: deps bench-deps test-deps frontend
	$(PY) benchmarks/rtmp_ingest.py
	$(PY) benchmarks/ladder_vs_ffmpeg.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/glass_to_glass.py
	$(PY) benchmarks/hls_delivery.py
	$(PY) benchmarks/cluster.py
	$(PY) benchmarks/chat_fanout.py
	$(PY) benchmarks/engagement.py
	$(PY) benchmarks/discovery.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis node_modules $(HLS_JS) test-artifacts
	rm -f mediaserver/rtmp/*.so

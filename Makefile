# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests drive as real peers: ffmpeg (RTMP client), PostgreSQL (server).
TEST_DEBS := ffmpeg postgresql
BENCH_DEBS := ffmpeg nginx libnginx-mod-rtmp

.PHONY: run test deps test-deps bench-deps bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[test]'
	touch $@

deps: $(VENV)/.installed

run: deps
	$(VENV)/bin/aethex serve

test-deps:
	@if ! command -v ffmpeg >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(TEST_DEBS); \
	fi

test: deps test-deps
	$(PY) -m pytest -q

bench-deps:
	@if ! command -v ffmpeg >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(BENCH_DEBS); \
	fi

bench: deps bench-deps
	$(PY) benchmarks/rtmp_ingest.py
	$(PY) benchmarks/ladder_vs_ffmpeg.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

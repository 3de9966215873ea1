# The two commands a new user needs: `make demo` and `make test`. The rest are for developers.
# Python runs in a virtual environment (.venv): Debian's own python3 refuses system-wide pip.
VENV ?= .venv
PYTHON ?= $(abspath $(VENV))/bin/python
export PYTHON
STACK := deploy/local/stack.sh
export STACK_PACS ?= main second

.PHONY: demo test stack stack-down install lint java-test py-test bench compose-check viewer viewer-check viewer-test

$(VENV)/bin/python:
	python3 -m venv $(VENV) || { apt-get update -q && apt-get install -y -q python3-venv && python3 -m venv $(VENV); }

install: $(VENV)/bin/python ## the Python package with its test extras, apt packages, the HAPI build
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -e '.[test]'
	STACK_APT_EXTRA="redis-server docker-compose" bash $(STACK) install

stack: install ## start HAPI + both Orthanc PACS (idempotent)
	bash $(STACK) up

stack-down:
	bash $(STACK) down

lint:
	$(PYTHON) -m ruff check sidecar subscription_handlers tests bench
	$(PYTHON) -m ruff format --check sidecar subscription_handlers tests bench

java-test: ## the operation provider's, the token enforcement's, the REST-hook guard's and the HAPI server's unit tests (offline once Surefire's test runner is cached)
	mvn -B -q -o -f deploy/hapi/pom.xml -pl fetch-imaging-provider,smart-auth,rest-hook-guard,server test 2>/dev/null || \
	  mvn -B -q -f deploy/hapi/pom.xml -pl fetch-imaging-provider,smart-auth,rest-hook-guard,server test

py-test: ## pytest; the session fixtures bring the stack up when it is not running
	$(PYTHON) -m pytest -q -ra

test: install lint java-test py-test viewer-test viewer-check

demo: install
	bash deploy/local/demo.sh

bench: ## every ratio of docs/benchmarks.md, on the running local stack (make demo first)
	$(PYTHON) bench/convert.py
	$(PYTHON) bench/fetch.py
	$(PYTHON) bench/gateway.py
	$(PYTHON) bench/audit.py
	$(PYTHON) bench/sync.py

compose-check: ## the Docker demo for real: up --build, what a user would check, down -v (CI)
	bash deploy/compose/check.sh

VIEWER := sidecar/entry/web/viewer
viewer: ## rebuild the viewer's checked-in dist/ from src/ (npm ci: exactly what package-lock.json pins)
	cd $(VIEWER) && npm ci --no-audit --no-fund && npm run build

viewer-test: ## the viewer's pure modules under node's test runner
	cd $(VIEWER) && node --test test/

viewer-check: viewer ## dist/ is what the sources build: a rebuild changes no byte of it
	git diff --exit-code --stat -- $(VIEWER)/dist
	test -z "$$(git status --porcelain -- $(VIEWER)/dist)"

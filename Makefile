# ImmunoReg: `make demo` serves the app with the demo cohort; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py

.PHONY: demo test lint format bootstrap migrate messages report-images

bootstrap: $(STAMP)

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

# Translations: the .po files are committed, the .mo files are built (needs gettext's msgfmt).
messages: bootstrap
	$(MANAGE) compilemessages --ignore=.venv --ignore=var --verbosity 0

migrate: bootstrap messages
	$(MANAGE) migrate --noinput

# The demo cohort's data cut-off is 2024-10-31: the demo runs as of that day, so its worklist
# and queries show what was due then. `make demo IMMUNOREG_TODAY=` uses the real date.
# The analytics of every scope a demo user may see (the whole registry, each site) are
# computed, with their figures, before the app is served.
demo: export IMMUNOREG_TODAY ?= 2024-10-31
demo: migrate
	@test -f var/.demo-seeded || ($(MANAGE) seed_demo && touch var/.demo-seeded)
	$(MANAGE) compute_analytics --every-scope
	$(MANAGE) render_report --out var/reports/immunoreg-$$(date -d "$$IMMUNOREG_TODAY" +%Y-%m 2>/dev/null || date +%Y-%m).pdf
	$(MANAGE) collectstatic --noinput --verbosity 0
	$(MANAGE) runserver 127.0.0.1:8000

# Two test processes (pytest-xdist), each with its own test database and media folder; a test
# file stays in one process, so a module's throwaway services are started once.
TEST_PROCESSES ?= 2
test: bootstrap messages
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy registry/domain analytics/stats

format: bootstrap
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Page images of the demo cohort's monthly report (English and Chinese) for people to look at:
# var/report-pages/*.png (not committed). Uses the demo database of `make demo`.
report-images: export IMMUNOREG_TODAY ?= 2024-10-31
report-images: migrate
	@test -f var/.demo-seeded || ($(MANAGE) seed_demo && touch var/.demo-seeded)
	$(MANAGE) compute_analytics
	mkdir -p var/report-pages
	for lang in en zh-hans; do \
	  $(MANAGE) render_report --lang $$lang --out var/report-pages/report-$$lang.pdf && \
	  pdftoppm -r 80 -png var/report-pages/report-$$lang.pdf var/report-pages/$$lang; \
	done
	@ls var/report-pages/*.png

# Backups (README.md, "Deployment"): the database (pg_dump) and the report archive (MEDIA_ROOT)
# into var/backups/<timestamp>/; `make restore BACKUP=var/backups/<timestamp>` into an empty
# database and a media folder without the backup's files (OVERWRITE_MEDIA=1 replaces them).
.PHONY: backup restore docker-check
backup:
	scripts/backup.sh

restore:
	@test -n "$(BACKUP)" || (echo "usage: make restore BACKUP=var/backups/<timestamp>" >&2; exit 2)
	scripts/restore.sh $(if $(OVERWRITE_MEDIA),--overwrite-media) "$(BACKUP)"

# What can be checked of the Docker deployment without a Docker engine: the compose file as
# Compose reads it (with .env.example as its configuration), and the shell scripts.
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || (command -v docker-compose >/dev/null && echo docker-compose))
docker-check:
	@test -n "$(COMPOSE)" || (echo "docker-check needs docker compose or docker-compose" >&2; exit 1)
	IMMUNOREG_ENV_FILE=../.env.example POSTGRES_PASSWORD=check-only \
	  $(COMPOSE) --env-file .env.example -f docker/compose.yaml config --quiet
	shellcheck docker/*.sh scripts/*.sh

# Performance bench (issues #8 and #15, docs/PERFORMANCE.md): PostgreSQL registries of SIZES
# patients in databases immunoreg_bench_<N> (DATABASE server: BENCH_PG), every figure beside its
# floor measured in the same run (R's survival package, raw SQL, COPY, a trivial page, plain PDF
# pages; R, pdfinfo and pg_dump from Debian's packages, installed here only), results in
# bench/results/*.json and docs/PERFORMANCE.md (bench/report.py flags ratios 20% worse than the
# committed results). make bench SIZES=1000000 for a million patients.
# Quick run: make bench SIZES="1000 10000"; BENCH_ARGS="--reseed" seeds again.
SIZES ?= 1000 10000 100000
BENCH_REPEATS ?= 3
# The bench runs the app on a Python built as the production image's is (python:3.11-slim:
# profile-guided and link-time optimised): Debian's python3.11 where there is one; pyenv's
# default build, without those optimisations, ran the pages about a quarter slower
# (docs/PERFORMANCE.md, "Which Python"). BENCH_PYTHON=python3 measures on the usual one.
BENCH_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) $(PYTHON))
BENCH_VENV := var/bench-venv
$(BENCH_VENV)/.installed: requirements/base.txt requirements/production.txt
	rm -rf $(BENCH_VENV)
	$(BENCH_PYTHON) -m venv --without-pip $(BENCH_VENV)
	$(BIN)/pip --python $(BENCH_VENV)/bin/python install --quiet -r requirements/production.txt
	touch $@

.PHONY: bench
bench: bootstrap messages $(BENCH_VENV)/.installed
	@command -v Rscript >/dev/null && Rscript -e 'library(survival); library(cmprsk)' >/dev/null 2>&1 && test -x /usr/bin/time \
	  && command -v pdfinfo >/dev/null && command -v pg_dump >/dev/null || \
	  (apt-get update && apt-get install -y --no-install-recommends r-base-core r-cran-survival r-cran-cmprsk time \
	    poppler-utils postgresql-client)
	BENCH_VENV=$(BENCH_VENV) $(BIN)/python bench/run.py --sizes "$(SIZES)" --repeats $(BENCH_REPEATS) $(BENCH_ARGS)

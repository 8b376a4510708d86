# The two set-up commands of the README: `make up` and `make test`.
.PHONY: up test lint bench

up:
	scripts/bootstrap
	.venv/bin/twinmesh up

test:
	scripts/system-deps
	scripts/bootstrap
	.venv/bin/python -m pytest -n 2 --timeout 900

lint:
	scripts/bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	scripts/mypy

bench:
	scripts/bootstrap
	.venv/bin/python bench/stac_search.py
	.venv/bin/python bench/jobs.py
	.venv/bin/python bench/verify.py
	.venv/bin/python bench/ogc_overhead.py
	.venv/bin/python bench/grpc_throughput.py
	.venv/bin/python bench/openeo_overhead.py

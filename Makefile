# The two promises of the README: `make demo` and `make test`, on a fresh
# machine with nothing but Python 3.10+ (and openssl, which Debian ships).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# checkov pins many libraries of its own: it gets a virtual environment of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
PYTEST_ARGS ?=

.PHONY: all venv test pytest infra-check demo bench bench-bulk bench-emulator bench-scale clean

all: test

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $@

test: pytest infra-check

# pytest exits 5 when it collects nothing; that is a failure here, not a pass.
pytest: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# Bicep: checkov's bicep framework, offline, zero failed checks.
infra-check: $(CHECKOV_VENV)/.installed
	$(CHECKOV) --directory infra --framework bicep --skip-download --quiet --compact

demo: venv
	$(PY) -m demo

bench: venv
	$(PY) bench/signing.py
	$(PY) bench/vault_calls.py
	$(PY) bench/crl.py

# Bulk issuance of 500 client certificates against the emulator's Key Vault throttling
# (20 creates per 10 s): a few minutes, so it is a target of its own.
bench-bulk: venv
	$(PY) bench/bulk_issue.py

# The emulator with 1,000 and then 10,000 certificates: listing, a no-op sweep and a write at
# each size, and their ratio (about a minute).
bench-emulator: venv
	$(PY) bench/emulator_scale.py

# Renewal at fleet scale with Key Vault's throttling on: 3,000 certificates swept in budget-cut
# sweeps (rate against the 2/s ceiling, order against expiry, half-done requests, reads), then 4
# processes sweeping one vault (creates per 10 s together). About ten minutes.
bench-scale: venv
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .hypothesis .demo

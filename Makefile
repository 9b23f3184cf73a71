# The two promises of the README: `make demo` and `make test`, on a fresh
# machine with nothing but Python 3.11+ (and openssl, which Debian ships).
#
# One virtual environment per interpreter: `make test` builds .venv with python3;
# `make test PYTHON=python3.13 VENV=.venv-3.13` builds and tests another. A venv made by one
# interpreter is never used by another (the `venv` target refuses), since packages with
# compiled parts (cryptography, aiohttp) and version markers (azure-functions-runtime, 3.13
# only) differ between them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# checkov pins many libraries of its own: it gets a virtual environment of its own, on
# python3 whatever PYTHON the tests use (it reads templates; one interpreter is enough).
CHECKOV_PYTHON ?= python3
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
PYTEST_ARGS ?=

.PHONY: all venv test pytest infra-check demo bench bench-bulk bench-enroll bench-emulator bench-revocation bench-scale clean

all: test

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@[ -n "$(PYTHON_VERSION)" ] || { echo "make: PYTHON=$(PYTHON) does not run" >&2; exit 1; }
	@$(same-interpreter)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed
	@$(same-interpreter)

# Refuses a $(VENV) that another Python version made (checked before it is updated, and before use).
define same-interpreter
[ ! -x $(PY) ] || { made=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
  [ "$$made" = "$(PYTHON_VERSION)" ] || { \
    echo "make: $(VENV) runs Python $$made but PYTHON=$(PYTHON) is $(PYTHON_VERSION): pass VENV=.venv-$(PYTHON_VERSION)" >&2; exit 1; }; }
endef

$(CHECKOV_VENV)/.installed:
	$(CHECKOV_PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $@

test: pytest infra-check

# pytest exits 5 when it collects nothing; like any non-zero status it fails the target.
pytest: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# Bicep: checkov's bicep framework, offline, zero failed checks. A check that crashes is
# logged with a traceback and left out of the counts, and a file its parser cannot read is
# counted as a parsing error and not checked at all, while checkov still exits 0: a traceback
# or a parsing error in its output fails this target too, since nothing was proved.
infra-check: $(CHECKOV_VENV)/.installed
	@echo "$(CHECKOV) --directory infra --framework bicep --skip-download --quiet --compact"
	@out=$$($(CHECKOV) --directory infra --framework bicep --skip-download --quiet --compact 2>&1); status=$$?; \
	printf '%s\n' "$$out"; \
	if printf '%s\n' "$$out" | grep -qE 'Traceback|Failed to run check|Parsing errors'; then \
	    echo "infra-check: checkov crashed on a check or could not parse a file (see above); fix the template" >&2; exit 1; \
	fi; \
	exit $$status

demo: venv
	$(PY) -m demo

bench: venv
	$(PY) bench/signing.py
	$(PY) bench/vault_calls.py
	$(PY) bench/crl.py
	$(PY) bench/revocation.py

# Revocation at 300 and 3,000 managed certificates: vault calls per revoke and per CRL, OCSP
# answers per second and keys-API signs per answer (about half a minute; also part of `bench`).
bench-revocation: venv
	$(PY) bench/revocation.py

# Bulk issuance of 500 client certificates against the emulator's Key Vault throttling
# (20 creates per 10 s): a few minutes, so it is a target of its own.
bench-bulk: venv
	$(PY) bench/bulk_issue.py

# 5,000 devices enrolled over EST (their own keys, CSRs made beforehand) against the emulator's
# keys-API throttling, the CA's key in the vault: the rate against the key's limit and the create path.
bench-enroll: venv
	$(PY) bench/enroll.py

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
	rm -rf .venv .venv-3.* $(CHECKOV_VENV) .pytest_cache .hypothesis .demo

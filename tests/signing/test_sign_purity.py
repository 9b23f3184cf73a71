"""The signing engine is the pure centre: cryptography, the standard library, and two offline
name tables (idna's IDNA 2008 code point tables, publicsuffixlist's bundled Public Suffix List)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kvca_core.signing

PACKAGE = Path(kvca_core.signing.__file__).resolve().parent
ALLOWED_KVCA = {"kvca_core.errors", "kvca_core.clock", "kvca_core"}
# Pure data packages with no I/O at run time: the name checks need their tables.
ALLOWED_THIRD_PARTY = {"cryptography", "idna", "publicsuffixlist"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
    return found


def test_signing_package_imports_only_cryptography_name_tables_stdlib_and_kvca_core_basics():
    for path in sorted(PACKAGE.glob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            ok = (top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY or module in ALLOWED_KVCA
                  or module.startswith("kvca_core.signing") or top == "__future__")
            assert ok, f"{path.name} imports {module}"


def test_importing_the_signing_engine_loads_no_azure_module():
    code = "import sys, kvca_core.signing; print(sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'aiohttp')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_public_api_of_the_contract_is_exported():
    for name in ("IssuancePolicy", "policy_for_ca", "Profile", "profile_from_ekus", "parse_subject", "parse_csr",
                 "Signer", "LocalSigner", "RemoteSigner", "IssuingCA", "issue_leaf", "IssuedCertificate",
                 "IssuanceUrls", "create_root", "create_intermediate"):
        assert name in kvca_core.signing.__all__ and hasattr(kvca_core.signing, name)

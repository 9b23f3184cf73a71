"""Helpers for the Functions app tests: call the registered triggers with real `azure.functions`
values, build CAs the recipe's way, and check chains with `openssl verify`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest  # the concrete class (func.TimerRequest is the abstract one)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, pkcs12

import function_app
from kvca_core import clock
from kvca_core.authority import parse_secret
from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root


# get_functions() indexes the app and may run once per process (it refuses to see a name twice).
FUNCTIONS = {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def user_function(name: str):
    return FUNCTIONS[name].get_user_function()


async def call_http(function: str, method: str, url: str, *, body: Any = None, raw: bytes | None = None,
                    route_params: dict[str, str] | None = None, params: dict[str, str] | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    req = func.HttpRequest(method=method, url=f"https://kvca.example/api/{url}", headers={
        "content-type": "application/json"}, params=params or {}, route_params=route_params or {}, body=data)
    resp: func.HttpResponse = await user_function(function)(req)
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text) if text else None, dict(resp.headers)


def grid_event(raw: dict[str, Any]) -> func.EventGridEvent:
    when = raw.get("eventTime")
    return func.EventGridEvent(
        id=raw.get("id", "id"), data=raw.get("data"), topic=raw.get("topic", ""), subject=raw.get("subject", ""),
        event_type=raw["eventType"], data_version=raw.get("dataVersion", "1"),
        event_time=dt.datetime.fromisoformat(when[:26].rstrip("Z")) if isinstance(when, str) else None)


async def deliver(raw: dict[str, Any]) -> None:
    await user_function("kvca_eventgrid")(grid_event(raw))


async def run_timer() -> None:
    await user_function("kvca_sweep")(TimerRequest(past_due=False))


def _key(kind: str):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


async def recipe_ca_material(name: str, *, key: str = "ec", years: int = 10):
    """A root and an intermediate made outside Key Vault, what `step ca init` does:
    (root, root_key, intermediate, intermediate_key)."""
    now = clock.now()
    root_key, inter_key = _key(key), _key(key)
    root = await create_root(f"CN={name} Root", LocalSigner(root_key), years=years, now=now)
    inter = await create_intermediate(f"CN={name} Intermediate", inter_key.public_key(),
                                      IssuingCA(root, (), LocalSigner(root_key)), years=years - 1, now=now)
    return root, root_key, inter, inter_key


async def import_recipe_ca(vault, name: str, *, key: str = "ec", years: int = 10, material=None):
    """The manual recipe: each CA certificate turned into a password-less PFX
    (`step certificate p12 --no-password --insecure`) and imported (`az keyvault certificate
    import`). Returns the root certificate."""
    root, root_key, inter, inter_key = material or await recipe_ca_material(name, key=key, years=years)
    # The recipe's intermediate PFX holds only the intermediate and its key; the root is its own PFX.
    await vault.import_certificate(f"{name}-root", pkcs12.serialize_key_and_certificates(
        b"root", root_key, root, None, NoEncryption()))
    await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
        b"intermediate", inter_key, inter, None, NoEncryption()))
    return root


async def chain_from_vault(vault, name: str, version: str | None = None) -> list[x509.Certificate]:
    content_type, value = await vault.get_secret_value(name, version)
    return parse_secret(f"certificate '{name}'", content_type, value)[1]


def openssl_verify(chain: list[x509.Certificate], root: x509.Certificate) -> str:
    """`openssl verify -CAfile root -untrusted intermediates leaf`: the leaf must chain to the root alone."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
        (d / "leaf.pem").write_bytes(chain[0].public_bytes(Encoding.PEM))
        untrusted = b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:] if c != root)
        args = ["openssl", "verify", "-x509_strict", "-CAfile", str(d / "root.pem")]
        if untrusted:
            (d / "chain.pem").write_bytes(untrusted)
            args += ["-untrusted", str(d / "chain.pem")]
        # -attime: the emulator's clock may be ahead of the wall clock.
        args += ["-attime", str(int(clock.now().timestamp())), str(d / "leaf.pem")]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()


async def versions(vault, name: str) -> list:
    return [v async for v in vault.list_versions(name)]


async def completed_versions(vault, name: str) -> list:
    return [v for v in await versions(vault, name) if v.x5t is not None]


async def snapshot(vault) -> dict:
    """Every certificate: its versions (id, enabled, thumbprint, tags) and its pending request's status.
    Equal snapshots before and after: the vault was left exactly as it was."""
    state = {}
    async for listed in vault.list_certificates(include_pending=True):
        vs = sorted([(v.version, v.enabled, v.x5t, tuple(sorted(v.tags.items())))
                     async for v in vault.list_versions(listed.name)])
        pending = await vault.get_pending(listed.name)
        state[listed.name] = (vs, pending.status if pending else None)
    return state

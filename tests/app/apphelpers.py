"""Helpers for the Functions app tests: call the registered triggers with real `azure.functions`
values, build CAs the recipe's way, and check chains with `openssl verify`."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest  # the concrete class (func.TimerRequest is the abstract one)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, pkcs12
from cryptography.x509.oid import NameOID

import function_app
from kvca_core.authority import parse_secret
from kvca_core.vocabulary import CA_TAG, ROLE_TAG
from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root


# get_functions() indexes the app and may run once per process (it refuses to see a name twice).
FUNCTIONS = {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def user_function(name: str):
    return FUNCTIONS[name].get_user_function()


async def call_http(function: str, method: str, url: str, *, body: Any = None, raw: bytes | None = None,
                    route_params: dict[str, str] | None = None, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    req = func.HttpRequest(method=method, url=f"https://kvca.example/api/{url}", headers={
        "content-type": "application/json", **(headers or {})}, params=params or {},
        route_params=route_params or {}, body=data)
    resp: func.HttpResponse = await user_function(function)(req)
    text = resp.get_body().decode()
    return resp.status_code, json.loads(text) if text else None, dict(resp.headers)


def grid_event(raw: dict[str, Any]) -> func.EventGridEvent:
    when = raw.get("eventTime")
    return func.EventGridEvent(
        id=raw.get("id", "id"), data=raw.get("data"), topic=raw.get("topic", ""), subject=raw.get("subject", ""),
        event_type=raw["eventType"], data_version=raw.get("dataVersion", "1"),
        event_time=dt.datetime.fromisoformat(when[:26].rstrip("Z")) if isinstance(when, str) else None)


def emulator_now() -> dt.datetime:
    """The emulator's own clock, read from its control API (`GET /_emulator/clock`) at the vault
    URL the `app` fixture put in the environment: the vault's time, independent of kvca's idea
    of it (which follows the vault only from its next answer)."""
    context = ssl.create_default_context(cafile=os.environ["KVCA_TLS_CA_BUNDLE"])
    url = os.environ["KVCA_VAULT_URL"].rstrip("/") + "/_emulator/clock"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        return dt.datetime.fromisoformat(json.load(response)["now"])


async def deliver(raw: dict[str, Any]) -> None:
    await user_function("kvca_eventgrid")(grid_event(raw))


async def run_timer(name: str = "kvca_sweep") -> None:
    await user_function(name)(TimerRequest(past_due=False))


def _key(kind: str):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


async def recipe_ca_material(name: str, *, key: str = "ec", years: int = 10):
    """A root and an intermediate made outside Key Vault, what `step ca init` does:
    (root, root_key, intermediate, intermediate_key), dated by the emulator's clock."""
    now = emulator_now()
    root_key, inter_key = _key(key), _key(key)
    root = await create_root(f"CN={name} Root", LocalSigner(root_key), years=years, now=now)
    inter = await create_intermediate(f"CN={name} Intermediate", inter_key.public_key(),
                                      IssuingCA(root, (), LocalSigner(root_key)), years=years - 1, now=now)
    return root, root_key, inter, inter_key


async def import_recipe_ca(vault, name: str, *, key: str = "ec", years: int = 10, material=None):
    """The manual recipe: each CA certificate turned into a password-less PFX
    (`step certificate p12 --no-password --insecure`) and imported (`az keyvault certificate
    import`), then the intermediate marked as the one that signs (tag kvca-role=intermediate, as
    `az keyvault certificate set-attributes --tags` writes it; an untagged CA is refused).
    Returns the root certificate."""
    root, root_key, inter, inter_key = material or await recipe_ca_material(name, key=key, years=years)
    # The recipe's intermediate PFX holds only the intermediate and its key; the root is its own PFX.
    await vault.import_certificate(f"{name}-root", pkcs12.serialize_key_and_certificates(
        b"root", root_key, root, None, NoEncryption()))
    await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
        b"intermediate", inter_key, inter, None, NoEncryption()), tags={ROLE_TAG: "intermediate"})
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
        args += ["-attime", str(int(emulator_now().timestamp())), str(d / "leaf.pem")]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()


def easy_auth_headers(object_id: str, name: str, roles: tuple[str, ...] = (), *,
                      app_only: bool = False) -> dict[str, str]:
    """The headers App Service authentication adds for an Entra ID caller, shaped as it writes them:
    X-MS-CLIENT-PRINCIPAL is base64 JSON {auth_typ, claims [{typ, val}], name_typ, role_typ} with the
    default claim mapping applied (learn.microsoft.com/azure/app-service/configure-authentication-user-identities)."""
    claims = [
        {"typ": "aud", "val": "api://kvca-test"},
        {"typ": "iss", "val": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": object_id},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
        {"typ": "ver", "val": "2.0"},
    ]
    if app_only:  # a client-credentials token: the app's id, no name claim
        claims.append({"typ": "azp", "val": name})
    else:
        claims += [{"typ": "name", "val": name}, {"typ": "preferred_username", "val": f"{name}@contoso.example"}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    principal = {"auth_typ": "aad", "claims": claims,
                 "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                 "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
            "X-MS-CLIENT-PRINCIPAL-ID": object_id, "X-MS-CLIENT-PRINCIPAL-NAME": name,
            "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}


async def versions(vault, name: str) -> list:
    return [v async for v in vault.list_versions(name)]


async def completed_versions(vault, name: str) -> list:
    return [v for v in await versions(vault, name) if v.x5t is not None]


async def import_leaves(vault, inter, inter_key, names, *, days: int, ca: str = "corp-ca",
                        concurrency: int = 16) -> None:
    """Leaves of `ca` (EC P-256: fast) signed by the intermediate outside the vault and imported
    with the kvca-ca tag: one call each, so a vault of hundreds fills quickly. Their policy is
    issuer Unknown, as Key Vault gives imported certificates, so renewals go through kvca."""
    now = emulator_now()
    limit = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN={name}.corp.internal"))
                .issuer_name(inter.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{name}.corp.internal")]), False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .sign(inter_key, hashes.SHA256()))
        pfx = pkcs12.serialize_key_and_certificates(name.encode(), key, leaf, [inter], NoEncryption())
        async with limit:
            await vault.import_certificate(name, pfx, tags={CA_TAG: ca})

    await asyncio.gather(*(one(n) for n in names))


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


async def import_excluding_ca(vault, name: str) -> None:
    """An intermediate made elsewhere whose name constraints permit corp.internal and exclude
    secret.corp.internal (the review's setup), imported with its root the recipe's way."""
    now = emulator_now()
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def build(subject: str, public_key, issuer: x509.Name, constraints: x509.NameConstraints | None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=700))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None if constraints is None else 0),
                                  critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if constraints is not None:
            builder = builder.add_extension(constraints, critical=True)
        return builder.sign(root_key, hashes.SHA256())

    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root")])
    root = build(f"{name} Root", root_key.public_key(), root_name, None)
    inter = build(f"{name} Intermediate", key.public_key(), root_name, x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("corp.internal")], excluded_subtrees=[x509.DNSName("secret.corp.internal")]))
    await vault.import_certificate(f"{name}-root", pkcs12.serialize_key_and_certificates(
        b"root", root_key, root, None, NoEncryption()))
    await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
        b"intermediate", key, inter, None, NoEncryption()), tags={ROLE_TAG: "intermediate"})

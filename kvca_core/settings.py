"""kvca's settings: one list, one frozen object, built from the environment once.

`SETTINGS` is the single list of every setting kvca reads. The Bicep app
settings, `local.settings.sample.json` and the README are checked against it
by tests, so a new setting is added here first and nowhere is a second list
kept by hand.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from kvca_core.errors import ConfigurationError


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None  # None: required
    description: str


SETTINGS: tuple[Setting, ...] = (
    Setting("KVCA_VAULT_URL", None,
            "URL of the Key Vault holding the CAs and the certificates, e.g. https://myvault.vault.azure.net/"),
    Setting("KVCA_VAULT_NAME", "",
            "The vault's name as Event Grid events carry it (VaultName); derived from the URL for "
            "*.vault.azure.net, set it explicitly for the emulator."),
    Setting("KVCA_TLS_CA_BUNDLE", "",
            "Extra PEM CA file to trust for the vault connection (the emulator's ca.pem); empty in Azure."),
    Setting("KVCA_VERIFY_CHALLENGE_RESOURCE", "true",
            "Check that the vault's auth challenge names a Key Vault resource; false only for the emulator."),
    Setting("KVCA_RENEW_BEFORE_DAYS", "30",
            "Renew a certificate when its current version expires within this many days."),
    Setting("KVCA_CONCURRENCY", "8",
            "How many certificates a sweep works on at once."),
    Setting("KVCA_SWEEP_SCHEDULE", "0 0 */6 * * *",
            "NCRONTAB schedule (6 fields) of the timer-triggered sweep."),
    Setting("KVCA_EVENTGRID_TOPIC_ENDPOINT", "",
            "Endpoint of the custom Event Grid topic that receives Kvca.CertificatePendingRequest; "
            "empty: sign inline, publish nothing."),
    Setting("KVCA_ISSUANCE_POLICY", "",
            "JSON issuance policy: either one policy for every CA, or {\"<ca name>\": {...}, \"*\": {...}}; "
            "every CA that signs needs an entry (its own or \"*\"): a CA without one is refused."),
    Setting("KVCA_ISSUING_CAS", "",
            "Comma-separated names of CA certificates that may sign leaves without the tag "
            "kvca-role=intermediate (a CA imported by hand, the recipe's way); a self-signed root never signs."),
    Setting("KVCA_CRL_URL", "",
            "Optional CRL distribution point URL written into issued certificates."),
    Setting("KVCA_AIA_URL", "",
            "Optional CA Issuers (AIA) URL written into issued certificates."),
    Setting("AZURE_CLIENT_ID", "",
            "Client ID of the user-assigned managed identity (read by DefaultAzureCredential)."),
)

SETTING_NAMES: frozenset[str] = frozenset(s.name for s in SETTINGS)
_DEFAULTS = {s.name: s.default for s in SETTINGS}


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use true or false)")


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value


def _json_object(name: str, raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def _name_list(name: str, raw: str) -> tuple[str, ...]:
    from kvca_core.events import NAME_RE  # Key Vault's object-name rule; imported late like the policy

    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    bad = [n for n in names if not NAME_RE.match(n)]
    if bad:
        raise ValueError(f"{name}: {', '.join(map(repr, bad))} is not a Key Vault certificate name")
    return names


def _https_url(name: str, raw: str, *, required: bool) -> str:
    if not raw:
        if required:
            raise ValueError(f"{name} is required")
        return ""
    parsed = urlparse(raw)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ValueError(f"{name}={raw!r} must be an https:// URL")
    return raw.rstrip("/")


def _policy_problems(setting: Mapping[str, Any] | None) -> list[str]:
    """Every policy of KVCA_ISSUANCE_POLICY checked now, at start (and by /api/health),
    rather than at the first issuance that happens to name a broken entry."""
    from kvca_core.signing import IssuancePolicy, policy_for_ca  # pure; imported late: settings load first

    if not setting:
        return []
    single = set(setting) <= set(IssuancePolicy.__dataclass_fields__)
    problems = []
    for ca_name in (["*"] if single else list(setting)):
        try:
            policy_for_ca(setting, ca_name)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


def vault_name_from_url(url: str) -> str:
    """`https://myvault.vault.azure.net` -> `myvault` (and the sovereign clouds' suffixes)."""
    host = urlparse(url).hostname or ""
    for suffix in (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net",
                   ".vault.microsoftazure.de", ".managedhsm.azure.net"):
        if host.endswith(suffix):
            return host[: -len(suffix)]
    return ""


@dataclass(frozen=True)
class Settings:
    vault_url: str
    vault_name: str
    tls_ca_bundle: str = ""
    verify_challenge_resource: bool = True
    renew_before_days: int = 30
    concurrency: int = 8
    sweep_schedule: str = "0 0 */6 * * *"
    eventgrid_topic_endpoint: str = ""
    issuance_policy: Mapping[str, Any] = field(default_factory=dict)
    issuing_cas: tuple[str, ...] = ()
    crl_url: str = ""
    aia_url: str = ""
    azure_client_id: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting; report every missing or malformed one in one error."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def read(name: str, parse: Callable[[str, str], Any]) -> Any:
            raw = env.get(name)
            if raw is None or raw == "":
                raw = _DEFAULTS[name] or ""
            try:
                return parse(name, raw)
            except ValueError as exc:
                problems.append(str(exc))
                return None

        text = lambda name, raw: raw.strip()  # noqa: E731
        vault_url = read("KVCA_VAULT_URL", lambda n, r: _https_url(n, r.strip(), required=True))
        values = dict(
            vault_url=vault_url,
            vault_name=read("KVCA_VAULT_NAME", text),
            tls_ca_bundle=read("KVCA_TLS_CA_BUNDLE", text),
            verify_challenge_resource=read("KVCA_VERIFY_CHALLENGE_RESOURCE", _flag),
            renew_before_days=read("KVCA_RENEW_BEFORE_DAYS", _positive_int),
            concurrency=read("KVCA_CONCURRENCY", _positive_int),
            sweep_schedule=read("KVCA_SWEEP_SCHEDULE", text),
            eventgrid_topic_endpoint=read("KVCA_EVENTGRID_TOPIC_ENDPOINT",
                                          lambda n, r: _https_url(n, r.strip(), required=False)),
            issuance_policy=read("KVCA_ISSUANCE_POLICY", _json_object),
            issuing_cas=read("KVCA_ISSUING_CAS", _name_list),
            crl_url=read("KVCA_CRL_URL", text),
            aia_url=read("KVCA_AIA_URL", text),
            azure_client_id=read("AZURE_CLIENT_ID", text),
        )
        problems.extend(_policy_problems(values["issuance_policy"]))
        if values["tls_ca_bundle"] and not os.path.isfile(values["tls_ca_bundle"]):
            problems.append(f"KVCA_TLS_CA_BUNDLE={values['tls_ca_bundle']!r} is not a readable file")
        if vault_url and not values["vault_name"]:
            values["vault_name"] = vault_name_from_url(vault_url)
            if not values["vault_name"]:
                problems.append(f"KVCA_VAULT_NAME is required: it cannot be derived from "
                                f"KVCA_VAULT_URL={vault_url!r} (not a *.vault.azure.net URL)")
        if problems:
            raise ConfigurationError("; ".join(problems), subject="settings",
                                     hint="see local.settings.sample.json for every setting and its default")
        return cls(**values)

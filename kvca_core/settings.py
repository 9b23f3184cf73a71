"""kvca's settings: one list, one frozen object, built from the environment once.

`SETTINGS` is the single list of every setting kvca reads. The Bicep app
settings, `local.settings.sample.json` and docs/settings.md are checked against it
by tests, so a new setting is added here first and nowhere is a second list
kept by hand.
"""

from __future__ import annotations

import datetime as dt
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
    Setting("KVCA_LEDGER_TABLE_URL", "",
            "The CA's ledger (every certificate signed, every revocation): the Table Storage table "
            "https://<account>.table.core.windows.net/<table>, written with the app's identity under an "
            "insert-only role; sqlite:///<absolute path> only off Azure (make demo). Required: kvca refuses "
            "to sign or revoke without it."),
    Setting("KVCA_VAULT_NAME", "",
            "The vault's name as Event Grid events carry it (VaultName); derived from the URL for "
            "*.vault.azure.net, set it explicitly for the emulator."),
    Setting("KVCA_TLS_CA_BUNDLE", "",
            "Extra PEM CA file to trust for the vault connection (the emulator's ca.pem); empty in Azure."),
    Setting("KVCA_CONNECT_TIMEOUT_SECONDS", "10",
            "Seconds a connection to Key Vault (and the Event Grid topic) may take: TCP connect and TLS "
            "handshake; each of azure-core's 3 connection retries waits as long again."),
    Setting("KVCA_READ_TIMEOUT_SECONDS", "60",
            "Seconds Key Vault (and the Event Grid topic) may stay silent while kvca waits for its answer."),
    Setting("KVCA_VERIFY_CHALLENGE_RESOURCE", "true",
            "Check that the vault's auth challenge names a Key Vault resource; false only for the emulator."),
    Setting("KVCA_RENEW_BEFORE_DAYS", "30",
            "Renew a certificate when its current version expires within this many days."),
    Setting("KVCA_CONCURRENCY", "8",
            "How many certificates a sweep works on at once."),
    Setting("KVCA_SWEEP_SCHEDULE", "0 0 */6 * * *",
            "NCRONTAB schedule (6 fields) of the timer-triggered sweep."),
    Setting("KVCA_SWEEP_BUDGET_SECONDS", "510",
            "Seconds a sweep starts new work for (most urgent first); it then finishes what it started and "
            "reports what is left for the next run. The default leaves 90 s of host.json's functionTimeout "
            "(10 minutes) for that."),
    Setting("KVCA_SWEEP_READ_SHARE", "0.25",
            "Share (above 0, at most 1) of Key Vault's 4,000 transactions per 10 s that one sweep may use for "
            "its reads and merges; the rest stays for events, HTTP callers, the CRL and OCSP."),
    Setting("KVCA_CREATE_LIMIT", "20",
            "Certificate creates per 10 s that kvca starts in the vault, counted across all its instances "
            "(Key Vault allows 20 with software keys; an HSM key counts 2). Lower it when other clients "
            "create in the same vault."),
    Setting("KVCA_EVENTGRID_TOPIC_ENDPOINT", "",
            "Endpoint of the custom Event Grid topic that receives Kvca.CertificatePendingRequest; "
            "empty: sign inline, publish nothing."),
    Setting("KVCA_ISSUANCE_POLICY", "",
            "JSON issuance policy: either one policy for every CA, or {\"<ca name>\": {...}, \"*\": {...}}; "
            "only a default for CAs without a policy stored with them (tag kvca-policy, `kvca ca policy set`); "
            "a CA with neither is refused."),
    Setting("KVCA_ISSUING_CAS", "",
            "Comma-separated names of CA certificates that may sign leaves without the tag "
            "kvca-role=intermediate (a CA imported by hand, the recipe's way); a self-signed root never signs."),
    Setting("KVCA_CRL_URL", "",
            "Optional CRL distribution point URL written into issued certificates; {ca} and {version} are "
            "replaced by the CA's name and the version of its key that signs, so that after a rotation each "
            "leaf names its own key's CRL (the Bicep sets http://<account>.blob.core.windows.net/crl/{ca}/{version}.crl)."),
    Setting("KVCA_CRL_CONTAINER_URL", "",
            "Blob container each CA's CRL is published to as <CA>.crl, on every revocation and on "
            "KVCA_CRL_SCHEDULE (https://<account>.blob.core.windows.net/crl); written with the app's identity; "
            "empty: no blob publishing (the CRL is still served at /api/crl/<CA>.crl)."),
    Setting("KVCA_CRL_SCHEDULE", "0 0 * * * *",
            "NCRONTAB schedule (6 fields) of the timer that re-signs and publishes every CA's CRL "
            "(default hourly, well before the CRL's 7-day nextUpdate)."),
    Setting("KVCA_AIA_URL", "",
            "Optional CA Issuers (AIA) URL written into issued certificates."),
    Setting("KVCA_ACCESS_RULES", "",
            "JSON rules for HTTP callers: {\"roles\": {\"<app role>\": RULE}, \"callers\": {\"<object id>\": RULE}, "
            "\"function_key\": RULE}, RULE = {\"actions\": [...], \"cas\": [...], \"dns_suffixes\": [...]}; "
            "empty: every function-key holder may do everything (reported by /api/health)."),
    Setting("KVCA_TRUST_EASY_AUTH", "false",
            "Believe the X-MS-CLIENT-PRINCIPAL header: true only while App Service authentication is on "
            "(only then does App Service strip the header from clients); the Bicep sets both."),
    Setting("KVCA_FORCE_RENEW_MIN_AGE_MINUTES", "60",
            "An HTTP renewal on demand (plain or forced) is refused while the current version is younger than this; "
            "0: no limit."),
    Setting("KVCA_OCSP_URL", "",
            "Optional base URL of kvca's OCSP responder (https://<app>/api/ocsp); leaves get <URL>/<CA> as "
            "their AIA OCSP URL; the answers are signed by the CA key that issued each certificate."),
    Setting("KVCA_CA_RENEW_BEFORE_DAYS", "398",
            "Warn (inventory, sweep summary, /api/health, webhook) when a CA certificate expires within this many "
            "days; the default is the longest leaf validity (398 days), since from then on leaves are cut short "
            "at the CA's notAfter."),
    Setting("KVCA_NOTIFY_WEBHOOK_URL", "",
            "Webhook (Slack or Teams Workflows compatible JSON) told of failed renewals, CAs nearing expiry and "
            "revocations; https only (http for 127.0.0.1, ::1 and localhost); may hold a token: never logged. "
            "Empty: no notifications."),
    Setting("KVCA_ROTATION_WINDOW_HOURS", "72",
            "After `kvca ca rotate`, the sweep moves every leaf of the older intermediate onto the new one "
            "within this many hours, each at its own point of the window (spread by name)."),
    Setting("KVCA_EXTERNAL_SIGN_SHARE", "0.5",
            "The share (above 0, at most 1) of the vault's key-operation limit (4,000 per 10 s for EC and "
            "RSA-2048 keys) that one instance may spend signing CSRs from outside the vault (sign-csr, EST); "
            "the rest is left for the vault's other work. Per instance: with N instances, at most N times it."),
    Setting("KVCA_TRUST_CLIENT_CERT_HEADER", "false",
            "Believe the X-ARR-ClientCert header (EST re-enrollment by the device's current certificate): true "
            "only while the app's client-certificate mode is on (clientCertEnabled), since only then does App "
            "Service put the TLS client certificate there instead of passing on what a client sent."),
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


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must be 0 or more")
    return value


def _positive_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={raw!r} must be a number of seconds above 0")
    return value


def _share(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not 0 < value <= 1:
        raise ValueError(f"{name}={raw!r} must be above 0 and at most 1 (a share of the vault's limit)")
    return value


def _json_object(name: str, raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    from kvca_core.jsontext import DuplicateKey, loads

    try:
        value = loads(raw, what=name)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except DuplicateKey as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def _shallow_json_object(name: str, raw: str) -> dict[str, Any]:
    """`_json_object` after kvca's nesting limit (kvca_core/jsontext.py): a setting nested
    thousands deep is a reported problem, not a RecursionError at start."""
    from kvca_core.jsontext import MAX_DEPTH, depth_exceeded_at

    if depth_exceeded_at(raw.encode("utf-8", "surrogatepass")) is not None:
        raise ValueError(f"{name} nests arrays or objects more than {MAX_DEPTH} levels deep")
    return _json_object(name, raw)


def _name_list(name: str, raw: str) -> tuple[str, ...]:
    from kvca_core.vocabulary import name_problem  # Key Vault's object-name rule; imported late like the policy

    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    bad = [n for n in names if name_problem(n)]
    if bad:
        raise ValueError(f"{name}: CA name {bad[0]!r} {name_problem(bad[0])}")
    return names


# Loopback hosts may take a plain http:// webhook (tests, local development): nothing leaves the machine.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _webhook_url(name: str, raw: str) -> str:
    """An https:// URL, or http:// to a loopback host. The URL may carry a secret token (Slack's
    and Teams Workflows' webhook URLs do), so a refusal names the scheme and host, never the URL."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        parsed = urlparse(raw)
        host = parsed.hostname or ""
        parsed.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        raise ValueError(f"{name} is not a URL") from None
    if not host or parsed.scheme not in ("https", "http"):
        raise ValueError(f"{name} must be an https:// URL with a host (scheme {parsed.scheme or 'none'!r})")
    if parsed.scheme == "http" and host.lower() not in LOOPBACK_HOSTS:
        raise ValueError(f"{name} must be an https:// URL: plain http is allowed only for "
                         f"{', '.join(sorted(LOOPBACK_HOSTS))}, not for host {host[:100]!r}")
    return raw


def _https_url(name: str, raw: str, *, required: bool) -> str:
    if not raw:
        if required:
            raise ValueError(f"{name} is required")
        return ""
    parsed = urlparse(raw)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ValueError(f"{name}={raw!r} must be an https:// URL")
    return raw.rstrip("/")


# NCRONTAB as the Functions timer trigger reads it: six fields, {second} {minute} {hour} {day}
# {month} {day-of-week} (learn.microsoft.com, "Timer trigger for Azure Functions", NCRONTAB
# expressions). Each field is *, a value, a range a-b, a step (*/n, a-b/n, a/n) or a comma list
# of those; months and days of the week may be named (Jan, Mon). A TimeSpan schedule is allowed
# only on an App Service plan, not on the Flex Consumption plan kvca deploys to.
_CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
                ("day-of-week", 0, 6))
_CRON_NAMES = {
    "month": {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"), 1)},
    "day-of-week": {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}


def _cron_value(text: str, field: str, low: int, high: int) -> int:
    named = _CRON_NAMES.get(field, {}).get(text.lower())
    if named is not None:
        return named
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"{text!r} is not a {field} ({low}-{high})")
    return int(text)


def _cron_field(text: str, field: str, low: int, high: int) -> frozenset[int]:
    """The values one field matches, or ValueError saying what is malformed. `a/n` runs from a to
    the field's end, as NCrontab reads it."""
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step = part.partition("/")
        if slash and not (step.isascii() and step.isdigit() and int(step) >= 1):
            raise ValueError(f"step {step!r} in {part!r} is not a whole number of at least 1")
        if base == "*":
            start, end = low, high
        else:
            first, dash, last = base.partition("-")
            start = _cron_value(first, field, low, high)
            end = _cron_value(last, field, low, high) if dash else (high if slash else start)
            if end < start:
                raise ValueError(f"range {base!r} runs backwards")
        values.update(range(start, end + 1, int(step) if slash else 1))
    return frozenset(values)


def _cron_fields(value: str) -> list[frozenset[int]]:
    return [_cron_field(text, field, low, high) for text, (field, low, high) in zip(value.split(" "), _CRON_FIELDS)]


def _ncrontab(name: str, raw: str) -> str:
    """A 6-field NCRONTAB expression, each field checked. The timer binding reads the app
    setting itself (`%KVCA_SWEEP_SCHEDULE%`, `%KVCA_CRL_SCHEDULE%`); with a 5-field cron or none the host disables
    the trigger without a word to the function, so kvca says it at start and in /api/health."""
    value = " ".join(raw.split())
    fields = value.split(" ") if value else []
    if len(fields) != 6:
        raise ValueError(f"{name}={raw!r} must be a 6-field NCRONTAB expression ({{second}} {{minute}} {{hour}} "
                         f"{{day}} {{month}} {{day-of-week}}, e.g. '0 0 */6 * * *'), not {len(fields)} field(s)")
    for text, (field, low, high) in zip(fields, _CRON_FIELDS):
        try:
            _cron_field(text, field, low, high)
        except ValueError as exc:
            raise ValueError(f"{name}={raw!r}: the {field} field {text!r} is malformed ({exc})") from None
    return value


# How far ahead `next_occurrence` looks: a 29 February that falls on a given weekday comes back
# within 28 years.
_CRON_HORIZON_DAYS = 366 * 29


def next_occurrence(expression: str, after: dt.datetime) -> dt.datetime | None:
    """The first time after `after` (UTC) that a valid 6-field NCRONTAB expression names, or None
    when it names none (e.g. 30 February). UTC: the timer trigger's default time zone
    (learn.microsoft.com/azure/azure-functions/functions-bindings-timer, "NCRONTAB time zones"), and
    kvca's Bicep sets no other. Day and day of week must both match (NCrontab's wiki, "Crontab Examples": `* 12 16 * Mon`
    runs only on a Monday that is the 16th)."""
    seconds, minutes, hours, days, months, weekdays = _cron_fields(" ".join(expression.split()))
    start = after.astimezone(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=1)
    for offset in range(_CRON_HORIZON_DAYS):
        day = (start + dt.timedelta(days=offset)).date()
        # Python's Monday is 0, NCRONTAB's Sunday is.
        if day.day not in days or day.month not in months or (day.weekday() + 1) % 7 not in weekdays:
            continue
        floor = start.time() if offset == 0 else dt.time(0, 0, 0)
        for hour in sorted(h for h in hours if h >= floor.hour):
            for minute in sorted(minutes):
                if (hour, minute) < (floor.hour, floor.minute):
                    continue
                for second in sorted(seconds):
                    candidate = dt.time(hour, minute, second)
                    if candidate >= floor:
                        return dt.datetime.combine(day, candidate, tzinfo=dt.timezone.utc)
    return None


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


def _access_problems(rules: Mapping[str, Any] | None, trust_easy_auth: bool | None,
                     env: Mapping[str, str]) -> list[str]:
    """KVCA_ACCESS_RULES checked at start, and KVCA_TRUST_EASY_AUTH against the platform: inside App
    Service (WEBSITE_SITE_NAME set) the platform sets WEBSITE_AUTH_ENABLED=True while authentication
    is on (Microsoft.Identity.Web's AppServicesAuthenticationInformation reads the same variable).
    Trusting the principal header with authentication off would believe what any client sends."""
    from kvca_core.access import AccessRules  # pure; imported late like the policy check

    problems = []
    try:
        AccessRules.parse(rules)
    except ValueError as exc:
        problems.append(str(exc))
    if trust_easy_auth and env.get("WEBSITE_SITE_NAME") and \
            (env.get("WEBSITE_AUTH_ENABLED") or "").strip().lower() != "true":
        problems.append("KVCA_TRUST_EASY_AUTH is true but App Service authentication is off "
                        "(WEBSITE_AUTH_ENABLED is not True): X-MS-CLIENT-PRINCIPAL would be whatever a client sent")
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
    ledger_table_url: str = ""
    tls_ca_bundle: str = ""
    # azure-core's default is 300 s for both (azure/core/configuration.py, ConnectionConfiguration),
    # so a vault behind a black hole held a command for 4 x 300 s with the 3 connection retries.
    # 10 s lets the OS resend a lost SYN three times (after 1, 3 and 7 s); azure-storage-blob,
    # on the same transport, waits 20 s to connect and 60 s for a read (_shared/constants.py).
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    verify_challenge_resource: bool = True
    renew_before_days: int = 30
    concurrency: int = 8
    sweep_schedule: str = "0 0 */6 * * *"
    sweep_budget_seconds: float = 510.0
    sweep_read_share: float = 0.25
    create_limit: int = 20
    eventgrid_topic_endpoint: str = ""
    issuance_policy: Mapping[str, Any] = field(default_factory=dict)
    issuing_cas: tuple[str, ...] = ()
    crl_url: str = ""
    crl_container_url: str = ""
    crl_schedule: str = "0 0 * * * *"
    aia_url: str = ""
    ocsp_url: str = ""
    azure_client_id: str = ""
    access_rules: Mapping[str, Any] = field(default_factory=dict)
    trust_easy_auth: bool = False
    force_renew_min_age_minutes: int = 60
    ca_renew_before_days: int = 398
    notify_webhook_url: str = field(default="", repr=False)  # may hold a token: kept out of repr and logs
    rotation_window_hours: int = 72
    external_sign_share: float = 0.5
    trust_client_cert_header: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, host: bool = False) -> "Settings":
        """Read every setting; report every missing or malformed one in one error.

        `host`: read inside the Functions host (/api/health), where the timer binding reads
        KVCA_SWEEP_SCHEDULE from the app settings itself: a default known only here would not
        reach it, so the setting must be present."""
        env = os.environ if environ is None else environ
        problems: list[str] = []
        for schedule, timer in (("KVCA_SWEEP_SCHEDULE", "the sweep"), ("KVCA_CRL_SCHEDULE", "the CRL timer")):
            if host and not (env.get(schedule) or "").strip():
                problems.append(f"{schedule} is required in the app settings: the timer binding reads it "
                                f"itself, and without it the Functions host disables {timer}")

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
            ledger_table_url=read("KVCA_LEDGER_TABLE_URL", text),
            tls_ca_bundle=read("KVCA_TLS_CA_BUNDLE", text),
            connect_timeout_seconds=read("KVCA_CONNECT_TIMEOUT_SECONDS", _positive_seconds),
            read_timeout_seconds=read("KVCA_READ_TIMEOUT_SECONDS", _positive_seconds),
            verify_challenge_resource=read("KVCA_VERIFY_CHALLENGE_RESOURCE", _flag),
            renew_before_days=read("KVCA_RENEW_BEFORE_DAYS", _positive_int),
            concurrency=read("KVCA_CONCURRENCY", _positive_int),
            sweep_schedule=read("KVCA_SWEEP_SCHEDULE", _ncrontab),
            sweep_budget_seconds=read("KVCA_SWEEP_BUDGET_SECONDS", _positive_seconds),
            sweep_read_share=read("KVCA_SWEEP_READ_SHARE", _share),
            create_limit=read("KVCA_CREATE_LIMIT", _positive_int),
            eventgrid_topic_endpoint=read("KVCA_EVENTGRID_TOPIC_ENDPOINT",
                                          lambda n, r: _https_url(n, r.strip(), required=False)),
            issuance_policy=read("KVCA_ISSUANCE_POLICY", _json_object),
            issuing_cas=read("KVCA_ISSUING_CAS", _name_list),
            crl_url=read("KVCA_CRL_URL", text),
            crl_container_url=read("KVCA_CRL_CONTAINER_URL", lambda n, r: _https_url(n, r.strip(), required=False)),
            crl_schedule=read("KVCA_CRL_SCHEDULE", _ncrontab),
            aia_url=read("KVCA_AIA_URL", text),
            ocsp_url=read("KVCA_OCSP_URL", lambda n, r: r.strip().rstrip("/")),
            azure_client_id=read("AZURE_CLIENT_ID", text),
            access_rules=read("KVCA_ACCESS_RULES", _shallow_json_object),
            trust_easy_auth=read("KVCA_TRUST_EASY_AUTH", _flag),
            force_renew_min_age_minutes=read("KVCA_FORCE_RENEW_MIN_AGE_MINUTES", _non_negative_int),
            ca_renew_before_days=read("KVCA_CA_RENEW_BEFORE_DAYS", _positive_int),
            notify_webhook_url=read("KVCA_NOTIFY_WEBHOOK_URL", _webhook_url),
            rotation_window_hours=read("KVCA_ROTATION_WINDOW_HOURS", _positive_int),
            external_sign_share=read("KVCA_EXTERNAL_SIGN_SHARE", _share),
            trust_client_cert_header=read("KVCA_TRUST_CLIENT_CERT_HEADER", _flag),
        )
        problems.extend(_policy_problems(values["issuance_policy"]))
        problems.extend(_access_problems(values["access_rules"], values["trust_easy_auth"], env))
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

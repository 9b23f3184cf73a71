"""`python -m demo` (`make demo`): kvca doing its job, start to finish, on this machine.

1. start the Key Vault emulator (HTTPS on loopback) and point kvca at it;
2. make two CAs: one created by kvca with its keys inside the vault, and one
   made outside and imported as a PFX, the way the manual recipe does it;
3. ask for certificates each way a user does: an HTTP call, kvca's own
   `Kvca.CertificatePendingRequest` event, and a pending certificate created
   directly in the vault as the portal does;
4. run the registered Functions handlers (HTTP, Event Grid, timer) to sign them;
5. move the emulator's clock to 30 days before expiry, so it raises
   `CertificateNearExpiry`, and let the Event Grid handler renew each one;
6. `openssl verify` every chain read back from the vault, print a table;
7. revoke one certificate and show `openssl verify -crl_check` refusing it with the
   CRL the app serves, then stop.

Nothing here is a second way of doing things: the handlers are the ones
function_app.py registers, and they call kvca_core.operations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import azure.functions as func
from azure.functions.timer import TimerRequest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, pkcs12
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
# A readable table in a terminal and in a CI log alike (rich assumes 80 columns without a terminal).
console = Console(width=None if sys.stdout.isatty() else 132)


# The demo's KVCA_ISSUANCE_POLICY.
DEMO_POLICY = {"*": {"allowed_domains": ["demo.internal"]}}


def _functions():
    import function_app

    return {fn.get_function_name(): fn.get_user_function() for fn in function_app.app.get_functions()}


async def _http(fns, name: str, method: str, route: str, body=None, route_params=None):
    req = func.HttpRequest(method=method, url=f"http://localhost:7071/api/{route}",
                           headers={"content-type": "application/json"}, params={},
                           route_params=route_params or {}, body=json.dumps(body).encode() if body else b"")
    resp = await fns[name](req)
    return resp.status_code, json.loads(resp.get_body() or b"null")


def _grid_event(raw: dict) -> func.EventGridEvent:
    return func.EventGridEvent(id=raw["id"], data=raw["data"], topic=raw.get("topic", ""),
                               subject=raw.get("subject", ""), event_type=raw["eventType"],
                               event_time=None, data_version=raw.get("dataVersion", "1"))


def _openssl_verify(chain: list[x509.Certificate], root: x509.Certificate, at: dt.datetime, tmp: Path) -> str:
    (tmp / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp / "leaf.pem").write_bytes(chain[0].public_bytes(Encoding.PEM))
    (tmp / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:]))
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp / "root.pem"), "-untrusted",
            str(tmp / "chain.pem"), "-attime", str(int(at.timestamp())), str(tmp / "leaf.pem")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return "OK" if result.returncode == 0 else f"FAILED: {(result.stdout + result.stderr).strip()[:120]}"


async def _recipe_pfx(name: str):
    """What `step ca init` + `step certificate p12 --no-password --insecure` produce: an EC P-256
    root and intermediate, and the intermediate (with its key and the root) as a PFX."""
    from kvca_core import clock
    from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root

    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = clock.now()
    root = await create_root(f"CN={name} Root CA", LocalSigner(root_key), years=10, now=now)
    inter = await create_intermediate(f"CN={name} Intermediate CA", inter_key.public_key(),
                                      IssuingCA(root, (), LocalSigner(root_key)), years=10, now=now)
    pfx = pkcs12.serialize_key_and_certificates(name.encode(), inter_key, inter, [root], NoEncryption())
    return root, pfx


async def _revocation_step(fns, ctx, work: Path, roots: dict, rows: dict) -> bool:
    """5. A lost MQTT device: revoke its certificate over HTTP, fetch the CA's CRL from the
    anonymous CRL route, and show `openssl verify -crl_check` refusing it (and passing the other)."""
    from kvca_core import clock
    from kvca_core.authority import parse_secret

    console.rule("[bold]5. A device is lost: revoke its certificate")
    lost, kept = "mqtt-client", "portal-made"  # both issued by recipe-ca
    status, body = await _http(fns, "kvca_revoke", "POST", f"certificates/{lost}/revoke",
                               {"reason": "keyCompromise"}, route_params={"name": lost})
    console.print(f"POST /api/certificates/{lost}/revoke -> {status} {body.get('action')} "
                  f"(serial {body.get('serial', '?')[:10]}, {body.get('reason')})")
    req = func.HttpRequest(method="GET", url="http://localhost:7071/api/crl/recipe-ca.crl", headers={},
                           params={}, route_params={"ca": "recipe-ca"}, body=b"")
    resp = await fns["kvca_crl"](req)
    crl = x509.load_der_x509_crl(resp.get_body())
    console.print(f"GET /api/crl/recipe-ca.crl -> {resp.status_code} {resp.mimetype}, {len(crl)} entry, "
                  f"next update {crl.next_update_utc:%Y-%m-%d %H:%M}")
    (work / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    results = {}
    # The revoked version is disabled, secret included: its certificate comes from the certificates
    # API, the CA's chain from the other certificate's secret (same CA).
    chain = parse_secret(f"certificate '{kept}'", *await ctx.vault.get_secret_value(kept))[1]
    (work / "root.pem").write_bytes(roots["recipe-ca"].public_bytes(Encoding.PEM))
    (work / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:]))
    for name in (lost, kept):
        (work / "leaf.pem").write_bytes(x509.load_der_x509_certificate(
            (await ctx.vault.get_certificate(name)).cer).public_bytes(Encoding.PEM))
        args = ["openssl", "verify", "-crl_check", "-CRLfile", str(work / "crl.pem"), "-CAfile", str(work / "root.pem"),
                "-untrusted", str(work / "chain.pem"), "-attime", str(int(clock.now().timestamp())),
                str(work / "leaf.pem")]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        results[name] = (result.returncode, (result.stdout + result.stderr).strip().splitlines())
        verdict = "passes" if result.returncode == 0 else "fails: " + next(
            (line for line in results[name][1] if "error" in line), "?")
        console.print(f"openssl verify -crl_check {name}: {verdict}")
    ok = results[lost][0] != 0 and any("certificate revoked" in l for l in results[lost][1]) and results[kept][0] == 0
    console.print("[green]the revoked certificate is refused, the other still verifies[/]" if ok
                  else "[red]revocation check did not behave[/]")
    return ok


async def demo(em, work: Path) -> int:
    from kvca_core import clock, context, operations
    from kvca_core.authority import parse_secret
    from kvca_core.ca import create_ca, import_ca
    from kvca_core.model import CA_TAG, CertificatePolicy, KeySpec

    fns = _functions()
    # function_app turns kvca's per-operation log lines on (for the Functions host); the demo
    # narrates instead. KVCA_DEMO_DEBUG=1 shows them.
    logging.getLogger("kvca_core").setLevel(logging.INFO if os.environ.get("KVCA_DEMO_DEBUG") else logging.WARNING)
    ctx = await context.shared()  # the same process context the handlers use
    rows: dict[str, dict] = {}

    console.rule("[bold]1. Two CAs")
    await create_ca(ctx, "demo-ca", subject="CN=kvca Demo Issuing CA, O=kvca demo", key="ec-p256", years=5)
    demo_root = x509.load_der_x509_certificate((await ctx.vault.get_certificate("demo-ca-root")).cer)
    console.print("created [cyan]demo-ca[/] (root + intermediate, keys generated inside the vault, never exported)")
    recipe_root, pfx = await _recipe_pfx("recipe-ca")
    await import_ca(ctx, "recipe-ca", pfx=pfx)
    del pfx
    console.print("adopted [cyan]recipe-ca[/] from the PFX the manual recipe makes (`step ca init`, "
                  "`step certificate p12`), as `kvca ca import --pfx` does")
    roots = {"demo-ca": demo_root, "recipe-ca": recipe_root}

    console.rule("[bold]2. Certificates requested three ways")
    status, body = await _http(fns, "kvca_issue", "POST", "certificates", {
        "name": "web-http", "ca": "demo-ca", "dns_names": ["web.demo.internal", "www.demo.internal"],
        "profile": "server", "key": "ec-p256", "validity_months": 12})
    console.print(f"POST /api/certificates web-http -> {status} {body['action']}")
    rows["web-http"] = {"ca": "demo-ca", "asked": "HTTP POST", "signed": "HTTP trigger"}

    status, body = await _http(fns, "kvca_issue", "POST", "certificates", {
        "name": "mqtt-client", "ca": "recipe-ca", "dns_names": ["device-01.demo.internal"],
        "profile": "client", "key": "rsa-2048", "sign": False})
    console.print(f"POST /api/certificates mqtt-client (sign: false) -> {status} {body['action']}: {body['reason']}")
    rows["mqtt-client"] = {"ca": "recipe-ca", "asked": "kvca event"}

    await ctx.vault.create_certificate("portal-made", CertificatePolicy(
        issuer_name="Unknown", subject="CN=portal.demo.internal", dns_names=("portal.demo.internal",),
        ekus=("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"), validity_months=12, key=KeySpec("RSA", size=2048)),
        tags={CA_TAG: "recipe-ca"})
    console.print("created [cyan]portal-made[/] pending in the vault (issuer Unknown, tag kvca-ca=recipe-ca), "
                  "as the portal does")
    rows["portal-made"] = {"ca": "recipe-ca", "asked": "portal-style"}

    console.rule("[bold]3. The Functions handlers sign")
    for event in em.take_events():
        if event["eventType"] == "Kvca.CertificatePendingRequest":
            await fns["kvca_eventgrid"](_grid_event(event))
            rows[event["data"]["ObjectName"]]["signed"] = "Event Grid trigger"
            console.print(f"kvca_eventgrid <- {event['eventType']} {event['data']['ObjectName']}")
    await fns["kvca_sweep"](TimerRequest(past_due=False))
    rows["portal-made"]["signed"] = "timer (sweep)"
    console.print("kvca_sweep (timer) ran")

    async def record(stage: str):
        for name, row in rows.items():
            current = await ctx.vault.get_certificate(name)
            leaf = x509.load_der_x509_certificate(current.cer)
            chain = parse_secret(f"certificate '{name}'", *await ctx.vault.get_secret_value(name, current.version))[1]
            row[f"{stage}_serial"] = format(leaf.serial_number, "x")[:10]
            row[f"{stage}_until"] = f"{leaf.not_valid_after_utc:%Y-%m-%d}"
            row[f"{stage}_verify"] = _openssl_verify(chain, roots[row["ca"]], clock.now(), work)
            row[f"{stage}_version"] = current.version

    await record("v1")

    console.rule("[bold]4. Time passes: 30 days before expiry")
    em.take_events()
    latest = max([(await ctx.vault.get_certificate(n)).expires_on for n in rows])
    em.clock.set(latest - dt.timedelta(days=30) + dt.timedelta(hours=1))
    console.print(f"emulator clock moved to {clock.now():%Y-%m-%d %H:%M} UTC")
    events = em.take_events()
    for event in events:
        await fns["kvca_eventgrid"](_grid_event(event))
        if event["eventType"] == "Microsoft.KeyVault.CertificateNearExpiry" and event["data"]["ObjectName"] in rows:
            rows[event["data"]["ObjectName"]]["renewed"] = "NearExpiry event"
            console.print(f"kvca_eventgrid <- CertificateNearExpiry {event['data']['ObjectName']}")
    # At-least-once delivery and the backing sweep: neither renews anything a second time.
    for event in events:
        await fns["kvca_eventgrid"](_grid_event(event))
    summary = await operations.sweep(ctx)
    console.print(f"events delivered again and a sweep run: renewed {summary.renewed}, "
                  f"signed {summary.signed} (nothing twice)")
    await record("v2")

    status, body = await _http(fns, "kvca_inventory", "GET", "certificates")
    console.print(f"GET /api/certificates -> {status}, {len(body['certificates'])} managed certificates")

    table = Table(title="kvca demo: every certificate, both versions, checked with openssl verify")
    for column in ("certificate", "CA", "requested by", "signed by", "v1 serial", "renewed by",
                   "v2 serial", "valid until", "openssl verify"):
        table.add_column(column)
    ok = True
    for name, row in rows.items():
        versions = [v async for v in ctx.vault.list_versions(name) if v.x5t is not None]
        good = row["v1_verify"] == row["v2_verify"] == "OK" and len(versions) == 2 \
            and row["v1_version"] != row["v2_version"]
        ok &= good
        table.add_row(name, row["ca"], row["asked"], row.get("signed", "?"), row["v1_serial"],
                      row.get("renewed", "-"), row["v2_serial"], row["v2_until"],
                      "[green]OK (v1, v2)[/]" if good else f"[red]{row['v1_verify']} / {row['v2_verify']}[/]")
    console.print(table)
    ok &= await _revocation_step(fns, ctx, work, roots, rows)
    console.print("[green]demo complete[/]" if ok else "[red]demo found a problem[/]")
    await context.reset_shared()
    return 0 if ok else 1


def main() -> int:
    from kvemulator import Emulator

    from kvca_core import clock

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if shutil.which("openssl") is None:
        console.print("[red]openssl is needed to verify the chains (apt-get install openssl)[/]")
        return 2
    state = ROOT / ".demo"
    state.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="verify-", dir=state))  # certificates only, removed at the end
    em = Emulator(vault_name="kvca-demo", tls_dir=state / "tls")
    em.start()
    console.print(f"Key Vault emulator at [cyan]{em.url}[/] (vault name {em.vault_name})")
    saved = dict(os.environ)
    try:
        os.environ.update(em.environ())
        # Every CA that signs needs an issuance policy (a CA without one is refused): both
        # demo CAs issue for demo.internal only.
        os.environ["KVCA_ISSUANCE_POLICY"] = json.dumps(DEMO_POLICY)
        clock.use(em.clock.now)
        return asyncio.run(demo(em, work))
    except Exception as exc:  # the demo's own failures: one line, then the non-zero exit
        console.print(f"[red]demo failed: {type(exc).__name__}: {exc}[/]")
        if os.environ.get("KVCA_DEMO_DEBUG"):
            raise
        return 1
    finally:
        clock.use(None)
        os.environ.clear()
        os.environ.update(saved)
        em.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m demo` (`make demo`): kvca doing its job, start to finish, on this machine.

1. start the Key Vault emulator (HTTPS on loopback) and point kvca at it;
2. make two CAs: one created by kvca with its keys inside the vault, and one
   made outside and imported as a PFX, the way the manual recipe does it;
3. ask for certificates each way a user does: an HTTP call, kvca's own
   `Kvca.CertificatePendingRequest` event, and a pending certificate created
   directly in the vault as the portal does;
4. run the registered Functions handlers (HTTP, Event Grid, timer) to sign them;
5. issue an exportable server certificate and use it, its key read from its Key Vault
   secret: a TLS handshake with nginx (or Python's ssl module when nginx is not
   installed) checked by `openssl s_client -verify_return_error`; then a device makes
   its own key with openssl, enrolls over EST (RFC 7030 simpleenroll, with a one-time
   enrollment code) and connects with that key: an MQTT publish through mosquitto with
   `require_certificate true`, or (mosquitto missing: the demo never installs anything
   itself) a mutual-TLS handshake with Python's ssl module requiring its certificate;
6. move the emulator's clock to 30 days before expiry, so it raises
   `CertificateNearExpiry`, and let the Event Grid handler renew each one;
7. `openssl verify` every chain read back from the vault, print a table;
8. revoke one certificate and show `openssl verify -crl_check` refusing it with the
   CRL the app serves;
9. rotate a CA (a new intermediate key under the same root), show the inventory calling its
   leaves due, and let the timer's sweep move each onto the new intermediate, checked with
   `openssl verify`; then stop.

Nothing here is a second way of doing things: the handlers are the ones
function_app.py registers, and they call kvca_core.operations.
"""

from __future__ import annotations

import asyncio
import contextlib
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
DEMO_POLICY = {"demo-ca": {"allowed_domains": ["demo.internal"], "cn_forms": ["dns-name", "ip-address", "device-id"],
                           "external_csrs": True, "external_profiles": ["client"]},
               "*": {"allowed_domains": ["demo.internal"]}}


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


async def _recipe_pfx(name: str, now: dt.datetime):
    """What `step ca init` + `step certificate p12 --no-password --insecure` produce: an EC P-256
    root and intermediate, and the intermediate (with its key and the root) as a PFX."""
    from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root

    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = await create_root(f"CN={name} Root CA", LocalSigner(root_key), years=10, now=now)
    inter = await create_intermediate(f"CN={name} Intermediate CA", inter_key.public_key(),
                                      IssuingCA(root, (), LocalSigner(root_key)), years=10, now=now)
    pfx = pkcs12.serialize_key_and_certificates(name.encode(), inter_key, inter, [root], NoEncryption())
    return root, pfx


async def _revocation_step(fns, ctx, em, work: Path, roots: dict, rows: dict) -> bool:
    """6. A lost MQTT device: revoke its certificate over HTTP, fetch the CA's CRL from the
    anonymous CRL route, and show `openssl verify -crl_check` refusing it (and passing the other)."""
    from kvca_core.authority import parse_secret

    console.rule("[bold]6. A device is lost: revoke its certificate")
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
                "-untrusted", str(work / "chain.pem"), "-attime", str(int(em.clock.now().timestamp())),
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


async def _rotation_step(fns, ctx, em, work: Path, root: x509.Certificate) -> bool:
    """7. `kvca ca rotate demo-ca`: a new intermediate key made in the vault, signed by the same
    root. The inventory calls the leaves the old key signed due; once the window
    (KVCA_ROTATION_WINDOW_HOURS) has passed, the timer's sweep has renewed each onto the new
    intermediate: root + new intermediate verifies it, the old intermediate cannot (another key)."""
    from kvca_core.authority import parse_secret
    from kvca_core.vocabulary import CA_VERSION_TAG
    from kvca_core.ca import rotate_ca

    console.rule("[bold]7. Rotate demo-ca: a new intermediate key, the leaves moved onto it")
    old = x509.load_der_x509_certificate((await ctx.vault.get_certificate("demo-ca")).cer)
    result = await rotate_ca(ctx, "demo-ca")
    new_version = await ctx.vault.get_certificate("demo-ca")
    new = x509.load_der_x509_certificate(new_version.cer)
    console.print(f"rotated demo-ca: intermediate serial {result.previous_serial[:10]} -> {result.ca.serial[:10]}, "
                  f"a new {result.ca.key} key made in the vault, signed by demo-ca-root")
    status, body = await _http(fns, "kvca_inventory", "GET", "certificates")
    # The vault's leaves move with the sweep; a device moves when it next enrolls (EST re-enrollment).
    in_vault = [c for c in body["certificates"] if c["ca"] == "demo-ca" and c["location"] == "vault"]
    leaves = [c["name"] for c in in_vault]
    # By name: the inventory's order (soonest expiry) follows which renewal got the earlier create slot.
    due = sorted(c["name"] for c in in_vault if c["state"] == "due")
    console.print(f"GET /api/certificates -> {status}: {', '.join(due) or 'none'} due (signed by the old "
                  f"intermediate, waiting to move; devices move when they next enroll)")
    window = ctx.settings.rotation_window_hours
    em.clock.advance(hours=window, minutes=1)
    await fns["kvca_sweep"](TimerRequest(past_due=False))
    console.print(f"emulator clock moved {window} hours on (KVCA_ROTATION_WINDOW_HOURS); kvca_sweep (timer) ran")
    ok = bool(leaves) and due == sorted(leaves)
    for name in leaves:
        current = await ctx.vault.get_certificate(name)
        chain = parse_secret(f"certificate '{name}'", *await ctx.vault.get_secret_value(name, current.version))[1]
        with_new = _openssl_verify([chain[0], new], root, em.clock.now(), work)
        with_old = _openssl_verify([chain[0], old], root, em.clock.now(), work)
        moved = current.tags.get(CA_VERSION_TAG) == new_version.version and chain[1] == new
        ok &= moved and with_new == "OK" and with_old != "OK"
        refused = next((line.split(": ", 1)[-1] for line in with_old.splitlines() if "error" in line), "?")
        console.print(f"{name} {'moved' if moved else '[red]NOT moved[/]'}: openssl verify with root + new "
                      f"intermediate: {with_new}; with the old one: "
                      + (f"fails ({refused})" if with_old != "OK" else "[red]passes[/]"))
    console.print("[green]every leaf of demo-ca moved onto the new key[/]" if ok
                  else "[red]the rotation did not move every leaf[/]")
    return ok


async def _ca_warning_step(fns, ctx) -> None:
    """A CA with a year left is inside its renewal window (KVCA_CA_RENEW_BEFORE_DAYS, 398 days):
    the inventory and the health check say so, naming the command that fixes it."""
    from kvca_core.ca import create_ca

    await create_ca(ctx, "short-ca", subject="CN=kvca Demo Short-lived CA, O=kvca demo", key="ec-p256", years=1)
    console.print("created [cyan]short-ca[/] with one year to live")
    status, body = await _http(fns, "kvca_inventory", "GET", "certificates")
    for warning in body["ca_warnings"]:
        console.print(f"GET /api/certificates -> CA warning: {warning['message']} ({warning['hint']})")


async def demo(em, work: Path) -> int:
    from kvca_core import context

    fns = _functions()
    # function_app turns kvca's per-operation log lines on (for the Functions host); the demo
    # narrates instead. KVCA_DEMO_DEBUG=1 shows them.
    # Its warnings too (the emulator's moved clock, the short-lived CA): the narration says what
    # happens, and a failure ends the demo with its own line.
    logging.getLogger("kvca_core").setLevel(logging.INFO if os.environ.get("KVCA_DEMO_DEBUG") else logging.ERROR)
    try:
        return await _demo(em, work, fns, await context.shared())  # the process context the handlers use
    finally:
        await context.reset_shared()  # its connections closed, whatever happened


async def _demo(em, work: Path, fns, ctx) -> int:
    from kvca_core import operations
    from kvca_core.authority import parse_secret
    from kvca_core.ca import create_ca, import_ca
    from kvca_core.model import CertificatePolicy, KeySpec
    from kvca_core.vocabulary import CA_TAG

    rows: dict[str, dict] = {}

    console.rule("[bold]1. Two CAs")
    await create_ca(ctx, "demo-ca", subject="CN=kvca Demo Issuing CA, O=kvca demo", key="ec-p256", years=5)
    demo_root = x509.load_der_x509_certificate((await ctx.vault.get_certificate("demo-ca-root")).cer)
    console.print("created [cyan]demo-ca[/] (root + intermediate, keys generated inside the vault, never exported)")
    recipe_root, pfx = await _recipe_pfx("recipe-ca", em.clock.now())
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
            row[f"{stage}_verify"] = _openssl_verify(chain, roots[row["ca"]], em.clock.now(), work)
            row[f"{stage}_version"] = current.version

    await record("v1")

    # While the emulator's clock is still today's: nginx, mosquitto and openssl check validity
    # against the real clock.
    console.rule("[bold]4. In use: a TLS server, and a device enrolling over EST with its own key")
    in_use = await _in_use(ctx, fns, work, demo_root)

    console.rule("[bold]5. Time passes: 30 days before expiry")
    em.take_events()
    latest = max([(await ctx.vault.get_certificate(n)).expires_on for n in rows])
    em.clock.set(latest - dt.timedelta(days=30) + dt.timedelta(hours=1))
    console.print(f"emulator clock moved to {em.clock.now():%Y-%m-%d %H:%M} UTC; kvca follows it from the "
                  "Date header of the vault's next answer")
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
    for device in summary.devices_due:
        # A device renews itself by re-enrolling: the sweep can only say which have not.
        console.print(f"sweep: device {device.name} has not re-enrolled ({device.state}, {device.days_left} days left): "
                      f"the sweep warns (a webhook, where one is set, is told once)")
    await record("v2")

    status, body = await _http(fns, "kvca_inventory", "GET", "certificates")
    console.print(f"GET /api/certificates -> {status}, {len(body['certificates'])} managed certificates")
    await _ca_warning_step(fns, ctx)


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
    ok &= in_use
    ok &= await _revocation_step(fns, ctx, em, work, roots, rows)
    ok &= await _rotation_step(fns, ctx, em, work, demo_root)
    console.print("[green]demo complete[/]" if ok else "[red]demo found a problem[/]")
    return 0 if ok else 1


async def _in_use(ctx, fns, work: Path, root: x509.Certificate) -> bool:
    """An exportable server certificate served over TLS, its key read from its Key Vault secret the way a
    consumer reads it (by the versionless secret ID); then a device that enrolls over EST with a key
    of its own and connects with it. True when both worked."""
    from kvca_core.authority import parse_secret
    from demo import consumers

    status, result = await _http(fns, "kvca_issue", "POST", "certificates", {
        "name": "shop-web", "ca": "demo-ca", "key": "ec-p256", "dns_names": ["shop.demo.internal"],
        "profile": "server"})
    console.print(f"POST /api/certificates shop-web (server profile, exportable by default) -> "
                  f"{status} {result.get('action', result)}")
    if status not in (200, 201):
        return False
    files = consumers.KeyFiles()
    servers: list = []
    try:
        # The versionless secret: what Application Gateway polls.
        key, certs = parse_secret("certificate 'shop-web'", *await ctx.vault.get_secret_value("shop-web"))
        cert, key = files.write(work, "shop-web", key, certs)
        root_file = consumers.pem_file(work / "demo-root.pem", [root])
        chain_file = consumers.pem_file(work / "demo-ca.pem", [
            x509.load_der_x509_certificate((await ctx.vault.get_certificate("demo-ca")).cer), root])
        if consumers.find("nginx"):
            server = consumers.Nginx(_fresh(work / "nginx"), cert, key, "shop.demo.internal").start()
            what = "nginx"
        else:
            server = consumers.PythonTLSServer(cert, key).start()
            what = "Python's ssl module (nginx is not installed)"
        servers.append(server)
        shake = consumers.s_client(server.port, "shop.demo.internal", root_file)
        served = format(shake.served.serial_number, "x")[:10] if shake.served else "-"
        console.print(f"TLS: {what} on 127.0.0.1:{server.port} serves shop-web (serial {served}); "
                      f"openssl s_client -verify_return_error with the root: "
                      + ("[green]verified[/]" if shake.verified else f"[red]FAILED[/] {shake.output[-200:]}"))
        device = await _enroll_device(ctx, fns, work)
        if device is None:
            return False
        return shake.verified and _device_connects(consumers, servers, work, cert, key, chain_file, *device)
    finally:
        for server in reversed(servers):
            server.stop()
        files.remove()


DEVICE = "device-002"


async def _enroll_device(ctx, fns, work: Path) -> tuple[Path, Path] | None:
    """A device with a key of its own: openssl makes the key and the CSR in the device's folder
    (mode 0700; the key never leaves it), and the device POSTs the CSR to EST's simpleenroll with its
    one-time enrollment code as HTTP Basic, as `curl --user` would, through the registered function.
    (certificate file, key file), or None when enrollment failed."""
    import base64

    from kvca_core import enrollment

    [issued] = await enrollment.make_codes(ctx, "demo-ca", [enrollment.DeviceEntry(DEVICE)], days=7)
    console.print(f"one-time enrollment code for {DEVICE}, valid 7 days, as `kvca enroll-codes demo-ca` makes "
                  "them (the ledger keeps only its hash)")
    folder = work / DEVICE
    folder.mkdir(mode=0o700)
    openssl = shutil.which("openssl") or "openssl"
    subprocess.run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    "device.key"], cwd=folder, check=True, capture_output=True)
    subprocess.run([openssl, "req", "-new", "-key", "device.key", "-subj", f"/CN={DEVICE}", "-outform", "DER",
                    "-out", "device.csr"], cwd=folder, check=True, capture_output=True)
    basic = base64.b64encode(f"{DEVICE}:{issued.code}".encode()).decode()
    req = func.HttpRequest(method="POST", url="https://kvca.demo/.well-known/est/demo-ca/simpleenroll",
                           headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {basic}"},
                           params={}, route_params={"ca": "demo-ca"},
                           body=base64.encodebytes((folder / "device.csr").read_bytes()))
    resp = await fns["kvca_est_simpleenroll"](req)
    if resp.status_code != 200:
        console.print(f"[red]EST simpleenroll {DEVICE} -> {resp.status_code}[/] {resp.get_body()[:200]!r}")
        return None
    (folder / "device.p7").write_bytes(base64.b64decode(resp.get_body()))
    subprocess.run([openssl, "pkcs7", "-inform", "DER", "-in", "device.p7", "-print_certs", "-out", "device.pem"],
                   cwd=folder, check=True, capture_output=True)
    leaf = x509.load_pem_x509_certificate((folder / "device.pem").read_bytes())
    record = await ctx.ledger.certificate("demo-ca", leaf.serial_number)
    console.print(f"EST: {DEVICE} made its key and CSR with openssl, POST /.well-known/est/demo-ca/simpleenroll -> "
                  f"200, {leaf.subject.rfc4514_string()} serial {format(leaf.serial_number, 'x')[:10]}, in the "
                  f"ledger as {record.location if record else '[red]MISSING[/]'} (never in the vault)")
    return folder / "device.pem", folder / "device.key"


def _device_connects(consumers, servers: list, work: Path, server_cert: Path, server_key: Path, chain_file: Path,
                     device_cert: Path, device_key: Path) -> bool:
    """The enrolled device connects with its own key: an MQTT publish through mosquitto with
    `require_certificate true`; without mosquitto, a TLS server requiring its client certificate."""
    missing = [b for b in ("mosquitto", "mosquitto_pub", "mosquitto_sub") if not consumers.find(b)]
    if missing:
        server = consumers.PythonTLSServer(server_cert, server_key, client_ca=chain_file).start()
        servers.append(server)
        shake = consumers.s_client(server.port, "shop.demo.internal", chain_file, cert=device_cert, key=device_key)
        ok = shake.verified and any(f"commonName={DEVICE}" in c for c in server.clients)
        console.print(f"mutual TLS: Python's ssl module on 127.0.0.1:{server.port} requires a client certificate of "
                      f"demo-ca; {DEVICE} connected with its own key: "
                      + ("[green]accepted[/]" if ok else f"[red]FAILED[/] {shake.output[-200:]}"))
        console.print(f"[yellow]MQTT: left out, {', '.join(missing)} not installed[/] "
                      f"({consumers.install_hint(*missing)}, then make demo again)")
        return ok
    broker = consumers.Mosquitto(_fresh(work / "mosquitto"), chain_file, server_cert, server_key).start()
    servers.append(broker)
    topic = f"devices/{DEVICE}/telemetry"
    subscriber = broker.subscribe(chain_file, device_cert, device_key, topic)
    broker.wait_for_log(f"u'{DEVICE}'")
    published = broker.publish(chain_file, device_cert, device_key, topic, "21.5")
    received, _ = subscriber.communicate(timeout=consumers.WAIT * 2)
    ok = published.returncode == 0 and received.strip() == f"{topic} 21.5"
    console.print(f"MQTT: mosquitto on 127.0.0.1:{broker.port} (require_certificate true, CA demo-ca): {DEVICE} "
                  f"published to {topic} with its own key, the subscriber got "
                  + (f"[green]{received.strip()!r}[/]" if ok else f"[red]nothing[/] {published.stderr[-200:]}"))
    return ok


def _fresh(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    return directory


def main() -> int:
    from kvemulator import Emulator

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
    try:
        with kvca_on(em, work):
            # Every CA that signs needs an issuance policy (a CA without one is refused): both
            # demo CAs issue for demo.internal only, and demo-ca may issue device certificates
            # whose CN is a plain device ID (Event Grid's MQTT broker names a client by its subject).
            os.environ["KVCA_ISSUANCE_POLICY"] = json.dumps(DEMO_POLICY)
            return asyncio.run(demo(em, work))
    except Exception as exc:  # the demo's own failures: one line, then the non-zero exit
        console.print(f"[red]demo failed: {type(exc).__name__}: {exc}[/]")
        if os.environ.get("KVCA_DEMO_DEBUG"):
            raise
        return 1
    finally:
        em.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def kvca_on(em, folder: Path):
    """kvca pointed at a running emulator for the time of the block: its settings in os.environ
    (as the Functions host or a shell would give them), with its ledger a SQLite file in `folder`
    (no Azurite needed: the demo runs where only Python, make and openssl are). kvca's clock needs nothing: it follows
    the Date of the vault's answers (kvca_core/clock.py), so a moved emulator clock is seen at
    kvca's next call. The demo and bench/bulk_issue.py run this way."""
    saved = dict(os.environ)
    try:
        os.environ.update(em.environ())
        os.environ["KVCA_LEDGER_TABLE_URL"] = f"sqlite:///{Path(folder).resolve() / 'ledger.db'}"
        yield em
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    sys.exit(main())

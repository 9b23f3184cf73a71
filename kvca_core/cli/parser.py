"""The `kvca` command line's grammar: every command, option and help text (docs/cli.md shows it, and
a test checks the two agree)."""

from __future__ import annotations

import argparse

from kvca_core.ca import DOWNLOAD_FORMATS, TRUST_FORMATS, TRUST_WHICH
from kvca_core.cli.errors import UsageError
from kvca_core.signing.crl import REASONS

KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096")
PROFILES = ("server", "client", "server-client")
POLICY_HELP = "the CA's issuance policy: a JSON file, or the JSON itself (starting with '{')"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other error
        raise UsageError(f"{self.prog}: {message}")


def whole_number(minimum: int):
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value
    return parse


POSITIVE, NON_NEGATIVE = whole_number(1), whole_number(0)


def _common() -> argparse.ArgumentParser:
    # The global options are accepted before and after the command; SUPPRESS keeps a sub-command's
    # defaults from overwriting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--vault", metavar="URL", default=argparse.SUPPRESS,
                        help="Key Vault URL (default: $KVCA_VAULT_URL)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="debug log and tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = Parser(prog="kvca", parents=[common],
                    description="A private CA for Azure Key Vault: create or import a CA, request, sign, renew and "
                                "inspect certificates, revoke them, export trust.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def add(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, help=help_text, description=help_text, parents=[common])

    _add_ca(sub, add)
    _add_request(add(sub, "request", "create a certificate request in Key Vault (issuer Unknown, tag kvca-ca)"))
    _add_certificate_commands(sub, add)
    _add_trust_commands(sub, add)
    _add_revocation_commands(sub, add)
    _add_device_commands(sub, add)
    _add_ledger_commands(sub, add)
    return parser


def _add_ca(sub, add) -> None:
    ca = add(sub, "ca", "create, import, rotate and inspect CAs, and their issuance policies")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="CA_COMMAND", parser_class=Parser)
    ca_sub.required = True
    p = add(ca_sub, "create", "create a root and an intermediate whose keys are generated in Key Vault")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--subject", required=True, help='e.g. "CN=Example CA, O=Example"')
    p.add_argument("--key", default="ec-p256", choices=KEY_TYPES)
    p.add_argument("--years", type=POSITIVE, default=10, help="validity of the intermediate (default 10)")
    p.add_argument("--root-years", type=POSITIVE, default=None, metavar="N",
                   help="validity of the root, at least --years (default: twice --years, at most 50)")
    p.add_argument("--root-subject", default=None, help='default: the subject with " Root" after its CN')
    p.add_argument("--permitted-dns", nargs="+", default=[], metavar="SUFFIX",
                   help="name constraints: the only DNS names the intermediate may sign")
    p.add_argument("--exportable", action="store_true",
                   help="make the intermediate's key exportable (the root's never is)")
    p = add(ca_sub, "import", "adopt an existing CA (PFX, or certificate and key PEM files)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--pfx", metavar="FILE")
    p.add_argument("--cert", metavar="FILE", help="the CA certificate (PEM; may include the chain)")
    p.add_argument("--key", metavar="FILE", help="its private key (PEM, PKCS#8, encrypted or not)")
    p.add_argument("--chain", metavar="FILE", help="the certificates above it, up to the root (PEM)")
    p.add_argument("--password-file", metavar="FILE",
                   help="file whose first line is the PFX or key password (default: prompt if needed)")
    for command in ("create", "import"):
        ca_sub.choices[command].add_argument("--policy", metavar="FILE|JSON", help=POLICY_HELP + (
            "; default: KVCA_ISSUANCE_POLICY's policy for the CA, else its name constraints as allowed "
            "domains, else none (it issues nothing until `kvca ca policy set`)"))
    add(ca_sub, "show", "show one CA").add_argument("name", metavar="NAME")
    add(ca_sub, "list", "list the CAs in the vault")
    p = add(ca_sub, "rotate", "a new intermediate version with a new key made in Key Vault, signed by the same "
                              "root; the sweep moves the leaves onto it (KVCA_ROTATION_WINDOW_HOURS)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--years", type=POSITIVE, default=None,
                   help="validity of the new intermediate (default: the current one's, ending no later than the root)")
    _add_policy(ca_sub, add)


def _add_policy(ca_sub, add) -> None:
    """`kvca ca policy show|set`. Not `--json TEXT` as a policy's spelling: --json is every
    command's output switch."""
    policy = add(ca_sub, "policy", "show or set the issuance policy stored with a CA")
    policy_sub = policy.add_subparsers(dest="policy_command", metavar="POLICY_COMMAND", parser_class=Parser)
    policy_sub.required = True
    add(policy_sub, "show", "the policy a CA signs under now, and where it comes from").add_argument("name",
                                                                                                   metavar="NAME")
    p = add(policy_sub, "set", "validate a policy and store it with the CA (in force at the next signing)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--policy", metavar="FILE|JSON", help=POLICY_HELP + "; the whole policy (fields left out "
                                                                    "take their defaults)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one field of the policy in force (or of --policy): the field's whole new value, "
                        "e.g. allowed_domains=a.example,b.example  max_validity_days=90  allow_wildcards=false; "
                        "repeatable")
    p.add_argument("--add", dest="additions", action="append", default=[], metavar="FIELD=VALUE",
                   help="add entries to a list field of the policy in force, keeping the others, e.g. "
                        "cn_forms=device-id  allowed_domains=c.example; repeatable")


def _add_request(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--dns", nargs="+", default=[], metavar="NAME")
    p.add_argument("--ip", nargs="+", default=[], metavar="ADDRESS",
                   help="IP address SANs (kept in a tag: Key Vault's policy cannot hold them; the CA's policy "
                        "must set allow_ip)")
    p.add_argument("--subject", help="default: CN=<first DNS name>")
    p.add_argument("--profile", choices=PROFILES, default=None, help="default: server")
    p.add_argument("--key", default=None, choices=KEY_TYPES, help="default: ec-p256")
    p.add_argument("--months", type=POSITIVE, default=None, help="default: 12")
    p.add_argument("--ca", help="the issuing CA (default: the only CA in the vault)")
    p.add_argument("--sign", action="store_true", help="sign it at once")
    p.add_argument("--email", nargs="+", default=[], metavar="ADDRESS", help="rfc822Name SANs (client profile)")
    p.add_argument("--uri", nargs="+", default=[], metavar="URI", help="URI SANs, e.g. spiffe://fleet.example/device-1")
    p.add_argument("--exportable", action=argparse.BooleanOptionalAction, default=None,
                   help="may the private key leave Key Vault in the certificate's secret (PFX/PEM)? "
                        "default: yes for the server, client and server-client profiles, which "
                        "Application Gateway, API Management, App Service and devices need")
    p.add_argument("--include-root", action=argparse.BooleanOptionalAction, default=None,
                   help="merge the root into the chain after the intermediates (API Management and App "
                        "Service require the full chain); default: yes for server and server-client, no for client")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="many certificates: a CSV file with a header row, or JSON lines (see below)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """\
--from FILE issues one certificate per row. The columns (CSV header) or keys (JSON lines) are
those of POST /api/certificates: name, ca, subject, dns_names, ip_addresses, emails, uris,
profile, key, validity_months, content_type, exportable, include_root. In CSV, list columns hold
space-separated values and booleans are true/false; options given on the command line (--ca,
--profile, --key, --months, --exportable, --include-root) fill the cells a row leaves empty.
Example CSV:
    name,dns_names,uris
    device-001,device-001.fleet.example,spiffe://fleet.example/device-001
The whole file is checked first, every row against its CA's policy too: a bad row refuses the
file, naming the line and the field, and nothing is created. Requests then run concurrently
within Key Vault's create limit (20 per 10 s).
Resuming: run the same command again. A certificate already issued for the same request is
reported "skipped" and left alone; one left pending by an interrupted run is signed; failed
rows are tried again; a name held by a different certificate fails. --json prints one JSON
result per line, in the file's order. Exit 0 when every row is issued or skipped, 1 when any
failed or the CA refused a row, 2 for bad arguments or a malformed file."""


def _add_certificate_commands(sub, add) -> None:
    add(sub, "sign", "sign a pending request").add_argument("name", metavar="NAME")
    p = add(sub, "renew", "start a new version of a certificate and sign it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--if-due", action="store_true", help="only when it is due (as the sweep decides)")
    p.add_argument("--force", action="store_true",
                   help="renew even if a renewal completed moments ago (otherwise that is an error)")
    add(sub, "cancel", "withdraw the pending request of a certificate kvca manages").add_argument("name",
                                                                                               metavar="NAME")
    p = add(sub, "sweep", "sign every pending request and renew every due certificate")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p = add(sub, "list", "the certificates kvca manages, most urgent first")
    p.add_argument("--expiring-within", type=NON_NEGATIVE, metavar="DAYS")
    p = add(sub, "show", "one certificate: chain, SANs, validity, serial, fingerprint, tags")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--serial", metavar="S", help="instead of NAME: a certificate of the ledger, in the vault or not")
    p.add_argument("--ca", metavar="CA", help="with --serial: the CA (when several used the serial)")


def _add_trust_commands(sub, add) -> None:
    p = add(sub, "export-chain", "the CA's trust certificates: root, intermediate or both; PEM, DER or PKCS#7")
    p.add_argument("name", metavar="CA")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--include-root", action="store_true", help="the same as --which both")
    p.add_argument("--which", choices=TRUST_WHICH, default=None,
                   help="intermediate (default): the CA that issues leaves, the one an Event Grid namespace "
                        "takes; root: the self-signed root alone; both: the whole chain, root last")
    p.add_argument("--format", choices=TRUST_FORMATS, default="pem",
                   help="pem (default), der (.cer: exactly one certificate) or p7b (PKCS#7)")
    p = add(sub, "download", "an exportable certificate with its private key and chain (file mode 0600)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--out", metavar="FILE", required=True)
    p.add_argument("--format", choices=DOWNLOAD_FORMATS, default="pem")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--password-file", metavar="FILE",
                   help="pfx only: encrypt it with the first line of FILE (default: no password)")


def _add_revocation_commands(sub, add) -> None:
    p = add(sub, "revoke", "revoke a certificate: recorded in the CA's ledger, listed on its CRL, answered by OCSP")
    p.add_argument("name", metavar="NAME", nargs="?", help="the vault certificate (leave out with --ca and --serial)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", metavar="V", help="the version to revoke (default: the current one)")
    which.add_argument("--serial", metavar="S", help="the certificate with this serial (hex): a version of NAME, "
                                                     "or with --ca any certificate in the CA's ledger")
    p.add_argument("--ca", metavar="CA", help="with --serial and no NAME: a certificate the vault no longer holds, "
                                              "or a device's")
    p.add_argument("--reason", required=True, metavar="REASON", help=f"RFC 5280 reason: {', '.join(REASONS)}")
    p = add(sub, "crl", "sign a CA's CRL now and write it (PEM)")
    p.add_argument("name", metavar="CA")
    p.add_argument("--out", metavar="FILE", required=True)
    p.add_argument("--version", metavar="V", help="the CRL of this key version of the CA (after a rotation each "
                                                  "still-valid key has one); default: the current key's")
    p.add_argument("--root", action="store_true",
                   help="the root's CRL over the intermediate, signed with the root's key (your identity "
                        "needs Crypto User on CA-root; the app has none), valid for a year")
    p.add_argument("--revoke-intermediate", metavar="REASON", help="with --root: list the intermediate as revoked")
    p = add(sub, "ocsp-responder", "issue the CA's delegated OCSP responder certificate CA-ocsp (needs KVCA_OCSP_URL)")
    p.add_argument("name", metavar="CA")


def _add_device_commands(sub, add) -> None:
    p = add(sub, "sign-csr", "sign CSRs from outside the vault (a device's or service's own key) with a CA whose "
                             "policy allows it (external_csrs)")
    p.add_argument("ca", metavar="CA")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--csr", metavar="FILE", help="one CSR (PEM, DER or base64 DER)")
    which.add_argument("--from", dest="from_source", metavar="DIR_OR_LIST",
                       help="many: a folder of .csr/.pem/.der files, or a file listing CSR paths, one a line")
    p.add_argument("--name", help="one CSR: the device's or service's name in the ledger (default: the CSR's CN)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="default: the first of the CA policy's external_profiles")
    p.add_argument("--days", type=POSITIVE, default=None, metavar="N",
                   help="validity in days, at most the policy's max_validity_days (default: the policy's)")
    p.add_argument("--out", metavar="FILE|DIR",
                   help="one CSR: write the certificate and its intermediates here (PEM; default: standard "
                        "output); --from: an existing folder for <CSR file name>.crt (default: next to each CSR)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """\
--from signs a fleet's CSRs: every file in the folder ending .csr, .req, .pem or .der, or the
files a list names (one path a line, relative to the list). Every CSR is read and its signature
checked first: an unreadable one refuses the run (exit 2) and nothing is signed. Each certificate
is named by its CSR's CN, checked against the CA's policy, signed and recorded in the ledger, and
its chain (PEM: the certificate, then the intermediates) written to <CSR file name>.crt. Standard
output gets one signed_csr JSON document a line, as each CSR is done: signed, skipped, or failed
with its reason. Resuming: run the same command again; a CSR signed before (the same public key
and names, found in the ledger) is reported skipped, not signed again, and its file written
again. Exit 0 when none failed, 1 when any did."""
    p = add(sub, "enroll-codes", "one-time enrollment codes for devices' first EST enrollment (HTTP Basic: the device "
                                 "ID and its code); kvca keeps only their hashes")
    p.add_argument("ca", metavar="CA")
    p.add_argument("--from", dest="from_file", metavar="FILE", required=True,
                   help="CSV with a header row: device_id, and optionally sans (names the device may hold besides "
                        "its ID, space-separated: DNS:..., URI:..., IP:..., email:...)")
    p.add_argument("--days", type=POSITIVE, default=7, metavar="N", help="how long the codes are valid (default 7)")
    p.add_argument("--out", metavar="FILE", required=True,
                   help="the codes file to create (CSV device_id,code,expires; mode 0600)")


def _add_ledger_commands(sub, add) -> None:
    ledger = add(sub, "ledger", "the CA's ledger: every certificate kvca signed and every revocation")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", metavar="LEDGER_COMMAND", parser_class=Parser)
    ledger_sub.required = True
    for name, text in (("list", "certificates in the ledger, soonest expiry first"),
                       ("export", "the same as CSV (default) or JSON lines, every field, for audit or a spreadsheet")):
        p = add(ledger_sub, name, text)
        p.add_argument("--ca", metavar="CA", help="one CA's certificates")
        p.add_argument("--serial", metavar="S", help="the certificate(s) of this serial")
        p.add_argument("--state", choices=("valid", "revoked", "expired"), help="only certificates in this state")
        p.add_argument("--expiring-within", type=NON_NEGATIVE, metavar="DAYS")
        p.add_argument("--location", choices=("vault", "external"), help="Key Vault certificates or devices' own")
        if name == "export":
            p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
            p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p = add(ledger_sub, "show", "one certificate of the ledger, by CA and serial: its record, and its revocation")
    p.add_argument("--ca", metavar="CA", help="the CA (default: any CA holding the serial)")
    p.add_argument("--serial", metavar="S", required=True)
    add(ledger_sub, "import", "record in the ledger what the vault remembers from before it: every managed "
                              "certificate version and each revocation its tags record (idempotent)")

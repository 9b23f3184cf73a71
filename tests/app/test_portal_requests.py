"""A certificate requested in the Azure portal: a subject, issuer "Unknown" (a non-integrated
CA) and kvca's CA tag, nothing else. Key Vault fills in the rest, EKUs serverAuth + clientAuth
among it (Python SDK recording test_merge_certificate, API 7.3; .NET session
DownloadECDsaCertificateSignRemoteVerifyLocal, API 7.2), and the emulator does the same. That
pair is Key Vault's default, not the requester's choice: kvca signs it as `server-client` where
the CA's policy allows that, else as the narrowest profile it allows (`server`, then `client`).
EKUs chosen on purpose, and kvca's own explicit profiles, keep their meaning."""

from __future__ import annotations

import pytest
from azure.keyvault.certificates import CertificatePolicy as SdkPolicy
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kvca_core import capolicy, operations
from kvca_core.errors import PolicyViolation
from kvca_core.vocabulary import CA_TAG
from kvca_core.operations import IssueRequest

from apphelpers import import_recipe_ca

SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
CA = "corp-ca"


async def ca_allowing(ctx, *profiles: str) -> None:
    """The CA, imported the recipe's way, with a stored issuance policy allowing `profiles`."""
    await import_recipe_ca(ctx.vault, CA)
    await capolicy.set_policy(ctx, CA, {"profiles": list(profiles)})


async def portal_request(kv_aio_clients, name: str, **extra) -> None:
    """What the portal's "Generate" form sends for a non-integrated CA, through the real SDK."""
    await kv_aio_clients.certificates.create_certificate(
        name, SdkPolicy(issuer_name="Unknown", subject=f"CN={name}.corp.internal", **extra),
        tags={CA_TAG: CA}, _polling_interval=0)


async def issued_ekus(ctx, name: str) -> list[x509.ObjectIdentifier]:
    leaf = x509.load_der_x509_certificate((await ctx.vault.get_certificate(name)).cer)
    return list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.mark.parametrize("profiles,ekus", [
    (("server",), [SERVER]),
    (("client",), [CLIENT]),
    (("server", "client"), [SERVER]),
    (("server", "client", "server-client"), [SERVER, CLIENT]),
], ids=["server-only", "client-only", "server-and-client", "all-three"])
async def test_a_portal_request_is_signed_as_the_profile_the_cas_policy_allows(ctx, kv_aio_clients, profiles, ekus):
    await ca_allowing(ctx, *profiles)
    await portal_request(kv_aio_clients, "portal")
    policy = await kv_aio_clients.certificates.get_certificate_policy("portal")
    assert policy.enhanced_key_usage == [SERVER.dotted_string, CLIENT.dotted_string]  # Key Vault's default
    outcome = await operations.sign_pending(ctx, "portal")
    assert outcome.action == "signed", outcome
    assert await issued_ekus(ctx, "portal") == ekus


async def test_ekus_chosen_in_the_portal_keep_their_meaning(ctx, kv_aio_clients):
    """clientAuth alone is a choice, not Key Vault's default: a server-only CA refuses it."""
    await ca_allowing(ctx, "server")
    await portal_request(kv_aio_clients, "chosen", enhanced_key_usage=[CLIENT.dotted_string])
    with pytest.raises(PolicyViolation, match="profile 'client' is not allowed"):
        await operations.sign_pending(ctx, "chosen")
    assert (await ctx.vault.get_pending("chosen")).status == "inProgress"


@pytest.mark.parametrize("profiles", [("server", "client", "server-client"), ("server-client",)])
async def test_kvcas_own_server_client_request_is_issued_as_server_client(ctx, profiles):
    """kvca's issue writes its profile's EKUs into the policy; for server-client that is the same
    pair, and where the CA allows server-client it stays server-client."""
    await ca_allowing(ctx, *profiles)
    outcome = await operations.issue(ctx, IssueRequest(name="both", ca=CA, dns_names=("both.corp.internal",),
                                                       profile="server-client"))
    assert outcome.action == "issued", outcome
    assert await issued_ekus(ctx, "both") == [SERVER, CLIENT]


async def test_kvcas_explicit_server_client_is_refused_by_a_ca_that_does_not_allow_it(ctx):
    await ca_allowing(ctx, "server")
    with pytest.raises(PolicyViolation, match="profile 'server-client' is not allowed"):
        await operations.issue(ctx, IssueRequest(name="both", ca=CA, dns_names=("both.corp.internal",),
                                                 profile="server-client"))

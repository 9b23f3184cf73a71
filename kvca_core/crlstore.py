"""Where CRLs are published: one blob `<CA>.crl` per CA in the container of KVCA_CRL_CONTAINER_URL.

    store = CrlStore(container_url, credential)
    url = await store.publish("corp-ca", der)     # the blob's URL
    await store.close()

The only module of kvca_core besides vault.py that imports azure.* (azure.storage.blob):
the operations (kvca_core/revocation.py) see `publish` and kvca's error kinds only.

The container is read anonymously over plain HTTP (infra/app/crl-storage.bicep): RFC 5280
4.2.1.13 CDPs are http URLs, and Windows CryptoAPI does not follow an https CDP whose own
certificate needs a revocation check. Writes are not anonymous: they go to the https
endpoint with the process's credential (DefaultAzureCredential, the app's identity holding
Storage Blob Data Contributor on this one container); no key or connection string in kvca.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient, ExponentialRetry

from kvca_core.errors import UpstreamError

logger = logging.getLogger(__name__)

# The SDK's default waits 15 s, then 45 s, ... between tries: a revocation would hang for minutes on
# an unreachable account. Two quick retries, then the failure is reported and the next timer
# run (KVCA_CRL_SCHEDULE) publishes.
_RETRY = dict(initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1)
# RFC 5280 4.2.1.13 and RFC 2585 3: a DER CRL fetched over HTTP is application/pkix-crl.
CRL_CONTENT_TYPE = "application/pkix-crl"


class CrlStore:
    def __init__(self, container_url: str, credential: Any) -> None:
        """`credential`: the process's token credential in Azure; tests give Azurite's
        AzureNamedKeyCredential (the emulator's published development account key)."""
        self.container_url = container_url.rstrip("/")
        self._client = ContainerClient.from_container_url(self.container_url, credential=credential,
                                                           retry_policy=ExponentialRetry(**_RETRY))

    def url_of(self, ca_name: str) -> str:
        return f"{self.container_url}/{ca_name}.crl"

    async def publish(self, ca_name: str, der: bytes, *, max_age: int) -> str:
        """Upload `der` as `<ca_name>.crl`, replacing the previous one (a single Put Blob, so a
        reader sees the old CRL or the new one, never half of either). `max_age` (seconds) goes
        into Cache-Control, which Blob storage serves with every read."""
        blob = f"{ca_name}.crl"
        settings = ContentSettings(content_type=CRL_CONTENT_TYPE, cache_control=f"public, max-age={max_age}")
        try:
            await self._client.upload_blob(blob, der, overwrite=True, content_settings=settings)
        except (AzureError, OSError) as exc:
            raise _translate(exc, self.url_of(ca_name)) from None
        return self.url_of(ca_name)

    async def close(self) -> None:
        await self._client.close()


def _translate(exc: BaseException, where: str) -> UpstreamError:
    subject = f"CRL blob {where}"
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return UpstreamError("could not get a token for Blob storage", subject=subject,
                             hint="check the managed identity / `az login` (AZURE_CLIENT_ID)")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        hint = "grant the identity Storage Blob Data Contributor on the CRL container" \
            if exc.status_code in (401, 403) else None
        code = getattr(exc, "error_code", None) or exc.reason or ""
        return UpstreamError(f"Blob storage answered HTTP {exc.status_code} ({code})".replace(" ()", ""),
                             subject=subject, hint=hint)
    return UpstreamError(f"could not reach Blob storage ({type(exc).__name__})", subject=subject)

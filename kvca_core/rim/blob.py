"""Blob storage: where CRLs are published, one blob `<CA>.crl` per CA in the container of
KVCA_CRL_CONTAINER_URL (`kvca_core.ports.CrlPublisher`).

    store = CrlStore(container_url, credential)
    url = await store.publish("corp-ca", der, max_age=300, number=n)   # the blob's URL; never older over newer
    await store.close()

The operations (kvca_core/revocation/) see `publish` and kvca's error kinds only.

The container is read anonymously over plain HTTP (infra/app/crl-storage.bicep): RFC 5280
4.2.1.13 CDPs are http URLs, and Windows CryptoAPI does not follow an https CDP whose own
certificate needs a revocation check. Writes are not anonymous: they go to the https
endpoint with the process's credential (DefaultAzureCredential, the app's identity holding
Storage Blob Data Contributor on this one container); no key or connection string in kvca.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient, ExponentialRetry

from kvca_core.rim import netcause
from kvca_core.errors import UpstreamError
from kvca_core.rim.azure import token_error  # the same words as for Key Vault's token

logger = logging.getLogger(__name__)

# The SDK's default waits 15 s, then 45 s, ... between tries: a revocation would hang for minutes on
# an unreachable account. Two quick retries, then the failure is reported and the next timer
# run (KVCA_CRL_SCHEDULE) publishes.
_RETRY = dict(initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1)
# RFC 5280 4.2.1.13 and RFC 2585 3: a DER CRL fetched over HTTP is application/pkix-crl.
CRL_CONTENT_TYPE = "application/pkix-crl"
# The blob's metadata carries the CRL number it holds, so a publisher can tell a newer CRL
# from an older one without downloading and parsing it (storage data: read as untrusted).
NUMBER_METADATA = "crlnumber"
# Tries of the read-compare-write loop when another instance writes in between. Every lost try
# means another publisher's CRL landed, and only a higher number than the blob's can land, so the
# loop ends after at most as many losses as there are publishers holding a lower number than
# ours: 16 covers a burst of revocations across several instances; a short random pause between
# tries keeps them from re-colliding in step.
_WRITE_TRIES = 16
_PAUSE_SECONDS = 0.05


class CrlStore:
    def __init__(self, container_url: str, credential: Any) -> None:
        """`credential`: the process's token credential in Azure; tests give Azurite's
        AzureNamedKeyCredential (the emulator's published development account key)."""
        self.container_url = container_url.rstrip("/")
        self._client = ContainerClient.from_container_url(self.container_url, credential=credential,
                                                           retry_policy=ExponentialRetry(**_RETRY))

    def url_of(self, ca_name: str, version: str | None = None) -> str:
        return f"{self.container_url}/{blob_name(ca_name, version)}"

    async def publish(self, ca_name: str, der: bytes, *, max_age: int, number: int, version: str | None = None) -> str:
        """Upload `der` (CRL number `number`) as `<ca_name>.crl`, unless the blob already holds
        a CRL with that number or a higher one. Two instances signing at once would otherwise
        race: the older CRL landing last would hide a revocation until the next timer run. So
        the write is conditional on the blob being what was read (If-Match on its ETag, or
        If-None-Match: * when there is none yet) and is read again if someone wrote meanwhile.
        One Put Blob, so a reader sees the old CRL or the new one, never half of either.
        `max_age` (seconds) goes into Cache-Control, which Blob storage serves with every read."""
        blob = self._client.get_blob_client(blob_name(ca_name, version))
        settings = ContentSettings(content_type=CRL_CONTENT_TYPE, cache_control=f"public, max-age={max_age}")
        url = self.url_of(ca_name, version)
        try:
            for _ in range(_WRITE_TRIES):
                try:
                    props = await blob.get_blob_properties()
                except ResourceNotFoundError:
                    props = None
                if props is not None and _number_of(props.metadata) >= number:
                    logger.info("kvca op=publish_crl ca=%s outcome=kept reason=the blob holds CRL number %s >= %s",
                                ca_name, _number_of(props.metadata), number)
                    return url
                condition = dict(overwrite=True, etag=props.etag, match_condition=MatchConditions.IfNotModified) \
                    if props is not None else dict(overwrite=False)
                try:
                    await blob.upload_blob(der, content_settings=settings,
                                           metadata={NUMBER_METADATA: str(number)}, **condition)
                    return url
                except (ResourceModifiedError, ResourceExistsError):
                    # another instance wrote it between our read and our write: read again
                    await asyncio.sleep(random.uniform(0, _PAUSE_SECONDS))
            raise UpstreamError(f"the blob kept changing while CRL number {number} was written "
                                f"({_WRITE_TRIES} tries)", subject=f"CRL blob {url}")
        except UpstreamError:
            raise
        except (AzureError, OSError) as exc:
            # A connection or token failure keeps its cause chained, for a traceback under --debug or
            # in the Functions log; an HTTP answer's error says all there is in its message.
            answered = isinstance(exc, HttpResponseError) and exc.status_code is not None
            raise _translate(exc, url) from (None if answered else exc)

    async def close(self) -> None:
        await self._client.close()


def blob_name(ca_name: str, version: str | None) -> str:
    """`<CA>.crl`: the CRL of the CA's current key; `<CA>/<version>.crl`: the CRL of one key version
    (after a rotation, each still-valid version's leaves name their own in their CDP)."""
    return f"{ca_name}/{version}.crl" if version else f"{ca_name}.crl"


def _number_of(metadata: Any) -> int:
    """The CRL number a blob's metadata says it holds; -1 when absent or not a plain number."""
    raw = (metadata or {}).get(NUMBER_METADATA, "")
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 40 else -1


def _translate(exc: BaseException, where: str) -> UpstreamError:
    # The blob's URL without a query or fragment: a SAS there would be a token.
    subject = f"CRL blob {urlsplit(where)._replace(query='', fragment='').geturl()}"
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return token_error(exc, subject, "Blob storage")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        hint = "grant the identity Storage Blob Data Contributor on the CRL container" \
            if exc.status_code in (401, 403) else None
        code = getattr(exc, "error_code", None) or exc.reason or ""
        return UpstreamError(f"Blob storage answered HTTP {exc.status_code} ({code})".replace(" ()", ""),
                             subject=subject, hint=hint)
    cause = netcause.describe(exc, peer=netcause.Peer.of_url(where))
    if cause is not None:
        return UpstreamError(f"could not reach Blob storage: {cause.text}", subject=subject, hint=cause.hint)
    return UpstreamError(f"could not reach Blob storage ({type(exc).__name__})", subject=subject)

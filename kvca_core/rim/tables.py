"""TableLedger: the ledger in Azure Table Storage, which the app's identity may read and insert into only.

    ledger = TableLedger("https://<account>.table.core.windows.net/<table>", credential)

The only module of kvca_core/ledger that imports azure.* (azure.data.tables.aio.TableClient,
learn.microsoft.com/python/api/azure-data-tables/azure.data.tables.aio.tableclient). Three calls,
and no others: `create_entity` (Insert Entity, a POST with no ETag: it fails with 409
EntityAlreadyExists on a taken key instead of overwriting), `get_entity` and
`query_entities`. (Error codes: learn.microsoft.com/rest/api/storageservices/table-service-error-codes;
a read of an absent entity is a 404 whose code is EntityNotFound there and ResourceNotFound
in Azurite, so any 404 but TableNotFound means "no such row".) The app's identity holds a custom role with
Microsoft.Storage/storageAccounts/tableServices/tables/entities/read and .../entities/add/action
alone (learn.microsoft.com/azure/role-based-access-control/permissions/storage): update, merge,
upsert and delete would be refused, and nothing here needs them. It cannot create the table
either: a missing table is a ConfigurationError, the Bicep makes it.

Keys and rows: rows.py (one table; partitions `cert:<ca>`, `serial:<serial>`, `revoked:<ca>`,
`crlnumber:<ca>:<scope>`, `once:<kind>`). Properties are strings (times as fixed-width UTC
text, so `not_after lt '<time>'` filters server-side) and the DER as Edm.Binary (at most 64 KiB).
Query results come sorted by PartitionKey, then RowKey
(learn.microsoft.com/rest/api/storageservices/querying-tables-and-entities): the first row of a
CRL numbering partition is its highest number. Reads are strongly consistent: an insert is
seen by the next read from any instance, which next_crl_number relies on.

Errors become kvca's kinds as rim/blob.py does for Blob storage: no token (rim/azure.py's
words), an HTTP answer (403 with the role to grant; 503 ServerBusy is the Table service's
throttling), or the connection's cause (netcause).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, AsyncIterator, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient

from kvca_core import clock
from kvca_core.rim import netcause
from kvca_core.rim.azure import token_error  # the same words as for Key Vault's token
from kvca_core.errors import ConfigurationError, KvcaError, Throttled, UpstreamError
from kvca_core.ledger.records import Row
from kvca_core.ledger.rows import Condition, RowLedger

# The SDK's default is 10 retries with exponential backoff: minutes on an unreachable account.
# Two quick ones, then the operation reports the failure (a CRL keeps its cached copy, a
# signing is retried by its trigger).
_CLIENT_OPTIONS = dict(retry_total=2, retry_backoff_factor=0.5, connection_timeout=10, read_timeout=30)
ROLE_HINT = ("grant the app's identity the ledger's custom role (tableServices/tables/entities/read and "
             "entities/add/action) on the table")
_TABLE_HINT = ("KVCA_LEDGER_TABLE_URL names a table that does not exist; the Bicep under infra/ makes it "
               "(the app's role cannot)")
_PROPERTY = re.compile(r"[a-z_]{1,40}")
_OPERATORS = ("eq", "lt", "ge")


def split_table_url(table_url: str) -> tuple[str, str]:
    """(account endpoint, table name) of https://<account>.table.core.windows.net/<table> or of
    Azurite's http://127.0.0.1:<port>/<account>/<table>."""
    parts = urlsplit(table_url)
    endpoint, _, table = parts.path.rstrip("/").rpartition("/")
    return f"{parts.scheme}://{parts.netloc}{endpoint}", table


class TableLedger(RowLedger):
    def __init__(self, table_url: str, credential: Any, *, now: Callable[[], dt.datetime] = clock.now,
                 **client_options: Any) -> None:
        """`credential`: the process's token credential in Azure; Azurite's AzureNamedKeyCredential
        in tests. `client_options` go to the TableClient on top of kvca's retry settings."""
        super().__init__(now=now)
        self.table_url = table_url.rstrip("/")
        endpoint, self.table_name = split_table_url(self.table_url)
        try:
            self._client = TableClient(endpoint, self.table_name, credential=credential,
                                       **{**_CLIENT_OPTIONS, **client_options})
        except ValueError as exc:  # no credential, or a URL the SDK cannot use
            raise ConfigurationError(f"cannot use the ledger table ({exc})", subject=f"ledger table {self.table_url}",
                                     hint="KVCA_LEDGER_TABLE_URL and the app's identity") from None

    def _where(self, pk: str, rk: str) -> str:
        return f"ledger table {self.table_url} row ({pk}, {rk})"

    async def _insert(self, pk: str, rk: str, row: Row) -> bool:
        try:
            await self._client.create_entity({**row, "PartitionKey": pk, "RowKey": rk})
        except ResourceExistsError as exc:
            if _code(exc) in ("EntityAlreadyExists", ""):
                return False
            raise self._translate(exc, self._where(pk, rk)) from None
        except (AzureError, OSError) as exc:
            raise self._translate(exc, self._where(pk, rk)) from _cause(exc)
        return True

    async def _read(self, pk: str, rk: str) -> Mapping | None:
        try:
            entity = await self._client.get_entity(pk, rk)
        except ResourceNotFoundError as exc:
            if _code(exc) == "TableNotFound":
                raise self._translate(exc, self._where(pk, rk)) from None
            return None
        except (AzureError, OSError) as exc:
            raise self._translate(exc, self._where(pk, rk)) from _cause(exc)
        return _row(entity)

    async def _query(self, low: str, high: str | None = None, *, where: Sequence[Condition] = (),
                     top: int | None = None) -> AsyncIterator[tuple[str, str, Mapping]]:
        clauses, parameters = (["PartitionKey eq @low"], {"low": low}) if high is None else \
            (["PartitionKey ge @low", "PartitionKey lt @high"], {"low": low, "high": high})
        for index, (name, operator, value) in enumerate(where):
            if not (_PROPERTY.fullmatch(name) or name == "RowKey") or operator not in _OPERATORS:
                raise ValueError(f"condition {name} {operator}")  # a kvca bug, never user input
            clauses.append(f"{name} {operator} @p{index}")
            parameters[f"p{index}"] = value
        count = 0
        try:
            async for entity in self._client.query_entities(" and ".join(clauses), parameters=parameters,
                                                            results_per_page=top):
                pk, rk = entity.get("PartitionKey"), entity.get("RowKey")
                yield str(pk), str(rk), _row(entity)
                count += 1
                if top is not None and count >= top:
                    return
        except (AzureError, OSError) as exc:
            raise self._translate(exc, f"ledger table {self.table_url} partition {low}") from _cause(exc)

    def _translate(self, exc: BaseException, where: str) -> KvcaError:
        return translate(exc, where, netcause.Peer.of_url(self.table_url))

    async def close(self) -> None:
        await self._client.close()


def _row(entity: Mapping) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}


def _code(exc: HttpResponseError) -> str:
    """The service's error code: the SDK decodes it for reads, insert errors keep it in the header."""
    code = getattr(exc, "error_code", None)
    if code is None and exc.response is not None:
        code = exc.response.headers.get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")


def _cause(exc: BaseException) -> BaseException | None:
    """A connection or token failure keeps its cause, for a traceback under --debug; an HTTP
    answer's error says all there is in its message."""
    answered = isinstance(exc, HttpResponseError) and exc.status_code is not None
    return None if answered else exc


def translate(exc: BaseException, where: str, peer: netcause.Peer) -> KvcaError:
    """An azure-core or connection error as kvca's kind, about `where` (a row or a partition)."""
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:

        return token_error(exc, where, "Table storage")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code = _code(exc)
        if code == "TableNotFound":
            return ConfigurationError("the ledger table does not exist", subject=where, hint=_TABLE_HINT)
        message = f"Table storage answered HTTP {exc.status_code} ({code})".replace(" ()", "")
        if exc.status_code == 503:  # ServerBusy: the Table service's throttling
            return Throttled(message, subject=where)
        return UpstreamError(message, subject=where, hint=ROLE_HINT if exc.status_code in (401, 403) else None)
    cause = netcause.describe(exc, peer=peer)
    if cause is not None:
        return UpstreamError(f"could not reach Table storage: {cause.text}", subject=where, hint=cause.hint)
    return UpstreamError(f"could not reach Table storage ({type(exc).__name__})", subject=where)

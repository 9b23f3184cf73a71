"""The rim: every module of kvca_core that talks to a service outside the process, one per service,
each implementing a protocol of kvca_core/ports.py. Nothing else in kvca_core imports azure.* or
aiohttp; `kvca_core.context.Context` builds these and hands the operations the ports.

    azure.py      what the Azure clients share: the credential, one connection pool, retries
    keyvault.py   Key Vault                                          ports.Vault
    eventgrid.py  Event Grid (kvca's custom topic)                   ports.EventPublisher
    blob.py       Blob storage (the CRLs)                            ports.CrlPublisher
    webhook.py    the notification webhook                           ports.NoticeSender
    monitor.py    Application Insights (telemetry export)
    netcause.py   why a connection failed, named from the exception chain
"""

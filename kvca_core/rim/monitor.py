"""Application Insights: kvca's records (kvca_core/telemetry.py) exported through OpenTelemetry, their
attributes stored as custom dimensions of the `traces` table."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def export_to_application_insights(logger_name: str) -> bool:
    """azure-monitor-opentelemetry's distro, reading APPLICATIONINSIGHTS_CONNECTION_STRING; only the
    records of `logger_name` and below are exported (the SDKs' HTTP lines stay out). It signs in with
    the app's managed identity (AZURE_CLIENT_ID): the Bicep's Application Insights accepts Entra ID
    only (local authentication off), and the worker's own exporter would send without a credential
    (azure-functions-runtime `otel.py`), so the app configures it itself
    (learn.microsoft.com/azure/azure-functions/opentelemetry-howto). False when the package is
    missing (it is in requirements.txt; a local run may lack it)."""
    try:
        from azure.identity import ManagedIdentityCredential
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logger.warning("kvca telemetry: azure-monitor-opentelemetry is not installed; records go to the log only")
        return False
    client_id = os.environ.get("AZURE_CLIENT_ID") or None
    configure_azure_monitor(credential=ManagedIdentityCredential(client_id=client_id), logger_name=logger_name)
    return True

"""Application Insights: kvca's records (kvca_core/telemetry.py) exported through OpenTelemetry, their
attributes stored as custom dimensions of the `traces` table."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def export_to_application_insights(logger_name: str) -> bool:
    """azure-monitor-opentelemetry's distro, reading APPLICATIONINSIGHTS_CONNECTION_STRING; only the
    records of `logger_name` and below are exported (the SDKs' HTTP lines stay out). False when the
    package is missing (it is in requirements.txt; a local run may lack it)."""
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logger.warning("kvca telemetry: azure-monitor-opentelemetry is not installed; records go to the log only")
        return False
    configure_azure_monitor(logger_name=logger_name)
    return True

"""Timer trigger `kvca_sweep`: the sweep on KVCA_SWEEP_SCHEDULE (NCRONTAB, default every 6 hours).

The binding reads `%KVCA_SWEEP_SCHEDULE%` from the app settings itself, before any of kvca
runs: the Bicep and local.settings.sample.json set it, and `Settings.from_env(host=True)`
(/api/health) reports it missing or malformed, since the host would disable the timer.

The sweep backs the events up: it signs pending requests and renews due
certificates even when an event was lost or never sent (keyvault-facts.md).
"""

from __future__ import annotations

import logging

import azure.functions as func

from kvca_core import context, operations

logger = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.function_name("kvca_sweep")
@bp.timer_trigger(arg_name="timer", schedule="%KVCA_SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def kvca_sweep(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.info("kvca sweep is running late (past due)")
    ctx = await context.shared()
    await operations.sweep(ctx)  # logs its own summary

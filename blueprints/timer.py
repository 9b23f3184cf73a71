"""Timer trigger `kvca_sweep`: the sweep on KVCA_SWEEP_SCHEDULE (NCRONTAB, default every 6 hours).

The binding reads `%KVCA_SWEEP_SCHEDULE%` from the app settings itself, before any of kvca
runs: the Bicep and local.settings.sample.json set it, and `Settings.from_env(host=True)`
(/api/health) reports it missing or malformed, since the host would disable the timer.

The sweep backs the events up: it signs pending requests and renews due
certificates even when an event was lost or never sent (docs/keyvault-behaviour.md).
It starts work for KVCA_SWEEP_BUDGET_SECONDS, which stays below host.json's functionTimeout
(10 minutes) by the time it needs to finish what it started; what it leaves, most urgent first,
is taken by the next run, whose time its summary gives.
"""

from __future__ import annotations

import logging

import azure.functions as func

from typing import Any, Awaitable, Callable

from kvca_core import context, operations, telemetry

logger = logging.getLogger(__name__)
bp = func.Blueprint()


def timer_function(blueprint: func.Blueprint, name: str, setting: str,
                   operation: Callable[[Any], Awaitable[Any]]) -> Callable[[func.TimerRequest], Awaitable[None]]:
    """Register timer `name` on `blueprint`: `operation(ctx)` on the schedule in app setting
    `setting` (read by the binding itself, `%SETTING%`). The operation logs its own summary; an
    error it raises marks the run failed in Application Insights."""

    @blueprint.function_name(name)
    @blueprint.timer_trigger(arg_name="timer", schedule=f"%{setting}%", run_on_startup=False, use_monitor=True)
    async def run(timer: func.TimerRequest) -> None:
        if timer.past_due:
            logger.info("kvca timer %s is running late (past due)", name)
        with telemetry.source("timer"):
            await operation(await context.shared())

    return run


kvca_sweep = timer_function(bp, "kvca_sweep", "KVCA_SWEEP_SCHEDULE", operations.sweep)

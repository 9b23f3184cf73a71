"""A sweep's calls to the vault stay within its share of Key Vault's transaction limit
(KVCA_SWEEP_READ_SHARE): every request but a create waits for the pace, retries included, and
the summary says how many there were, the most in one window and the cap."""

from __future__ import annotations

from kvca_core import operations
from kvca_core.operations import ReadPace

from apphelpers import import_leaves, import_recipe_ca, recipe_ca_material
from scalehelpers import FakeClock, most_in_window, timed_requests


class RecordingPace(ReadPace):
    """ReadPace that also keeps the time of every call it let through."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []

    async def take(self) -> None:
        await super().take()
        self.times.append(self.monotonic())


async def test_the_pace_lets_at_most_its_limit_through_in_any_window():
    clock = FakeClock()
    pace = ReadPace(10, 10.0, monotonic=clock.now, sleep=clock.sleep)
    times = []
    for _ in range(25):
        await pace.take()
        times.append(clock.now() - 1_000_000.0)
    assert times == [0.0] * 10 + [10.0] * 10 + [20.0] * 5
    assert (pace.count, pace.peak, pace.limit) == (25, 10, 10)


def test_the_share_is_of_key_vaults_4000_per_10_seconds_counted_over_a_longer_window():
    # The vault counts a request when it arrives, after kvca let it go: kvca's window is half a second longer.
    assert (ReadPace.share(0.25).limit, ReadPace.share(0.25).window) == (1000, 10.5)
    assert ReadPace.share(1).limit == 4000


async def test_a_sweep_keeps_its_cap_and_every_request_it_makes_is_paced(app, ctx):
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    names = [f"leaf-{i:02d}" for i in range(40)]  # two listing pages and 40 pending checks
    await import_leaves(ctx.vault, material[2], material[3], names[:38], days=365)
    await import_leaves(ctx.vault, material[2], material[3], names[38:], days=61)
    app.clock.advance(days=45)  # two are due: their creates are not paced here, their reads and merges are
    # Retried requests count: a few 503s (with Retry-After) on the certificate reads.
    app.faults.add(kind="503", route=r"^/certificates/leaf-0[0-4]/pending", method="GET", count=3, retry_after=0.01)
    clock = FakeClock()
    pace = RecordingPace(12, 10.0, monotonic=clock.now, sleep=clock.sleep)
    with timed_requests(app) as log:
        summary = await operations.sweep(ctx, reads=pace)
    assert summary.failed == 0 and summary.renewed == 2, summary.failures
    calls = len(log.times(creates=False))
    creates = len(log.times(creates=True))
    # Every request the emulator saw, but the 2 creates, went through the pace (faults are answered
    # before the emulator logs a request: the 3 retried attempts are paced but not logged).
    assert creates == 2 and calls == pace.count - 3
    assert most_in_window(pace.times, 10.0) == 12  # the cap was reached, never passed
    assert (summary.reads, summary.peak_reads, summary.read_cap) == (pace.count, 12, 12)
    assert summary.to_dict()["reads"] == {"count": pace.count, "peak": 12, "cap": 12, "window_seconds": 10.0}

"""The "due" rule: the renewal window, and two thirds of the lifetime for short certificates."""

import datetime as dt

from hypothesis import given, strategies as st

from kvca_core.model import CertificateVersion
from kvca_core.operations import due_state, renewal_time

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def version(days: float, nbf=T0) -> CertificateVersion:
    return CertificateVersion(name="c", version="v", enabled=True, not_before=nbf,
                              expires_on=nbf + days * DAY, created_on=nbf, tags={})


def test_a_one_year_certificate_is_due_30_days_before_expiry():
    v = version(365)
    assert renewal_time(v.not_before, v.expires_on, 30) == v.expires_on - 30 * DAY
    assert not due_state(v, v.expires_on - 31 * DAY, 30)[0]
    assert due_state(v, v.expires_on - 30 * DAY, 30)[0]


def test_a_short_certificate_is_due_after_two_thirds_of_its_lifetime():
    v = version(21)  # a 30-day window would make it due at birth
    assert renewal_time(v.not_before, v.expires_on, 30) == T0 + 14 * DAY
    assert not due_state(v, T0 + 13 * DAY, 30)[0]
    assert due_state(v, T0 + 14 * DAY, 30)[0]


def test_an_expired_certificate_is_due_and_the_reason_says_when():
    due, why = due_state(version(365), T0 + 400 * DAY, 30)
    assert due and "due since" in why


def test_a_version_without_expiry_is_never_due():
    v = CertificateVersion(name="c", version=None, enabled=False, not_before=None, expires_on=None,
                           created_on=None, tags={})
    assert due_state(v, T0, 30) == (False, "the current version has no expiry date")


@given(lifetime_hours=st.integers(min_value=1, max_value=24 * 3650), window=st.integers(min_value=1, max_value=400))
def test_a_freshly_issued_certificate_is_never_due(lifetime_hours, window):
    v = version(lifetime_hours / 24)
    # Issued now (nbf backdated 5 minutes, as the signer does): not due for the first third of its life.
    now = T0 + dt.timedelta(minutes=5)
    assert not due_state(v, now, window)[0] or lifetime_hours * 60 / 3 <= 5
    at = renewal_time(v.not_before, v.expires_on, window)
    assert v.not_before + (v.expires_on - v.not_before) * 2 / 3 <= at <= v.expires_on

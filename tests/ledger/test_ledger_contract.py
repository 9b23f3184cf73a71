"""The ledger port's contract, run against both stores (TableLedger on Azurite, SqliteLedger):
idempotent records, conflicts, first revocation wins, per-CA partitions, case-insensitive CA
names, CRL numbers across two instances, insert_once under concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from kvca_core.errors import Conflict, InvalidRequest
from kvca_core.signing.crl import crl_number

from ledgerhelpers import NOW, certificate, record, revocation


async def test_a_recorded_certificate_reads_back_field_for_field(ledger):
    rec = record()
    stored = await ledger.record_certificate(rec)
    assert stored == rec
    assert stored.sans == ("DNS:device-1.ledger.test", "IP:10.0.0.7", "URI:spiffe://ledger.test/device-1",
                           "email:ops@ledger.test")
    assert await ledger.certificate("rev-ca", rec.serial) == rec
    assert await ledger.certificate("rev-ca", int(rec.serial, 16)) == rec  # a serial as a number
    assert await ledger.certificate("rev-ca", rec.serial.upper()) == rec  # or as hex in any case
    assert await ledger.certificate("other-ca", rec.serial) is None
    assert await ledger.find_serial(rec.serial) == [rec]
    external = record(location="external", name="sensor 17 (hall B)", version=None)
    assert await ledger.record_certificate(external) == external
    assert (await ledger.certificate("rev-ca", external.serial)).version is None


async def test_recording_the_same_certificate_again_returns_the_first_record(ledger, backing):
    rec = record()
    first = await ledger.record_certificate(rec)
    retry = dataclasses.replace(rec, requested_by="timer", recorded_at=NOW + dt.timedelta(minutes=3))
    assert await backing.open().record_certificate(retry) == first  # another instance, a retry
    both = await asyncio.gather(*(ledger.record_certificate(retry) for _ in range(5)))
    assert all(r == first for r in both)
    assert [r async for r in ledger.certificates("rev-ca")] == [first]


async def test_another_certificate_under_a_recorded_serial_is_a_conflict(ledger):
    serial = 0x5EED
    stored = await ledger.record_certificate(record(certificate(serial)))
    other = record(certificate(serial, cn="intruder.ledger.test"))
    with pytest.raises(Conflict, match=f"serial {stored.serial} is already recorded") as caught:
        await ledger.record_certificate(other)
    assert other.sha256 in str(caught.value)
    assert await ledger.certificate("rev-ca", serial) == stored
    # The same serial under another CA is another certificate (serials are unique per issuer).
    assert (await ledger.record_certificate(record(certificate(serial), ca="other-ca"))).ca == "other-ca"


async def test_ca_names_are_case_insensitive(ledger):
    rec = record(ca="Corp-CA")
    assert await ledger.record_certificate(rec) == rec
    for spelling in ("corp-ca", "CORP-CA", "Corp-CA"):
        assert await ledger.certificate(spelling, rec.serial) == rec
    assert await ledger.record_certificate(dataclasses.replace(rec, ca="CORP-CA")) == rec  # a retry
    assert [r.serial async for r in ledger.certificates("corp-ca")] == [rec.serial]
    revoked, new = await ledger.record_revocation(revocation(rec.serial, ca="CORP-CA"))
    assert new and revoked.ca == "CORP-CA"
    assert await ledger.revocations("corp-ca") == [revoked]
    assert (await ledger.record_revocation(revocation(rec.serial, ca="corp-ca", reason="superseded"))) == \
        (revoked, False)
    assert await ledger.next_crl_number("CORP-CA", "ABC123") + 1 == await ledger.next_crl_number("corp-ca", "abc123")


async def test_find_serial_finds_every_ca_holding_the_serial(ledger):
    serial = 0xC0FFEE
    first = await ledger.record_certificate(record(certificate(serial), ca="alpha-ca"))
    second = await ledger.record_certificate(record(certificate(serial), ca="beta-ca"))
    await ledger.record_certificate(record(certificate(serial + 1), ca="alpha-ca"))
    assert await ledger.find_serial("c0ffee") == [first, second]
    assert await ledger.find_serial(0xDEAD) == []


async def test_certificates_by_ca_by_expiry_and_by_location(ledger):
    soon = [await ledger.record_certificate(record(certificate(days=10))) for _ in range(3)]
    later = await ledger.record_certificate(record(certificate(days=300)))
    external = await ledger.record_certificate(record(certificate(days=10), location="external", name="meter-4",
                                                      version=None))
    elsewhere = await ledger.record_certificate(record(certificate(days=10), ca="other-ca"))
    by_serial = lambda records: sorted(records, key=lambda r: r.serial)  # noqa: E731
    assert [r async for r in ledger.certificates("rev-ca")] == by_serial([*soon, later, external])
    expiring = [r async for r in ledger.certificates("rev-ca", expiring_before=NOW + dt.timedelta(days=30))]
    assert expiring == by_serial([*soon, external])
    assert [r async for r in ledger.certificates("rev-ca", location="external")] == [external]
    assert [r async for r in ledger.certificates(location="vault", expiring_before=NOW + dt.timedelta(days=30))] \
        == [elsewhere] + by_serial(soon)  # every CA: ordered by CA (other-ca < rev-ca), then serial
    lasting = [r async for r in ledger.certificates("rev-ca", expiring_after=NOW + dt.timedelta(days=30))]
    assert lasting == [later]
    window = [r async for r in ledger.certificates(expiring_after=NOW + dt.timedelta(days=9),
                                                   expiring_before=NOW + dt.timedelta(days=30), location="external")]
    assert window == [external]
    with pytest.raises(InvalidRequest, match="location"):
        [r async for r in ledger.certificates(location="attic")]


async def test_the_first_revocation_stands_whoever_races_it(ledger, backing):
    rec = await ledger.record_certificate(record())
    other = backing.open()
    attempts = [revocation(rec.serial, reason=reason, by=f"operator-{i}", at=NOW + dt.timedelta(seconds=i))
                for i, reason in enumerate(["keyCompromise", "superseded", "cessationOfOperation"] * 4)]
    results = await asyncio.gather(*((ledger if i % 2 else other).record_revocation(a)
                                     for i, a in enumerate(attempts)))
    assert sum(new for _, new in results) == 1
    winner = next(stored for stored, new in results if new)
    assert {stored for stored, _ in results} == {winner}
    assert winner in attempts
    assert await ledger.revocation("rev-ca", rec.serial) == winner
    assert await ledger.revocations("rev-ca") == [winner]


async def test_revocations_are_listed_per_ca(ledger):
    ours = [await ledger.record_certificate(record()) for _ in range(3)]
    theirs = await ledger.record_certificate(record(ca="other-ca"))
    for rec in ours[:2]:
        await ledger.record_revocation(revocation(rec.serial))
    await ledger.record_revocation(revocation(theirs.serial, ca="other-ca", reason="superseded"))
    listed = await ledger.revocations("rev-ca")
    assert [r.serial for r in listed] == sorted(r.serial for r in ours[:2])
    assert [(r.ca, r.serial, r.reason) for r in await ledger.revocations("other-ca")] == \
        [("other-ca", theirs.serial, "superseded")]
    assert await ledger.revocations("third-ca") == []
    assert await ledger.revocation("rev-ca", ours[2].serial) is None


async def test_crl_numbers_are_distinct_and_increasing_across_two_instances(backing):
    """Two app instances, 20 callers each allocating 10 numbers in turn, all at once: 200 numbers,
    no two alike, every caller's own sequence increasing, and none skipped."""
    instances = [backing.open(), backing.open()]

    async def caller(index: int) -> list[int]:
        return [await instances[index % 2].next_crl_number("rev-ca", "v1") for _ in range(10)]

    sequences = await asyncio.gather(*(caller(i) for i in range(20)))
    numbers = [n for seq in sequences for n in seq]
    assert len(set(numbers)) == 200
    assert all(seq == sorted(seq) and len(set(seq)) == len(seq) for seq in sequences)
    assert sorted(numbers) == list(range(min(numbers), min(numbers) + 200))
    assert await instances[0].next_crl_number("rev-ca", "v1") == max(numbers) + 1


async def test_crl_numbering_starts_above_the_clock_numbers_and_is_per_scope(backing):
    """kvca numbered CRLs by the signing time's microseconds before the ledger: a numbering
    starts there, once, and continues from its highest number whatever the clocks say later."""
    ledger = backing.open(now=lambda: NOW)
    first = await ledger.next_crl_number("rev-ca", "keyv1")
    assert first == crl_number(NOW)
    assert await ledger.next_crl_number("rev-ca", "keyv1") == first + 1
    # Another key version of the CA, or another CA: numberings of their own.
    assert await ledger.next_crl_number("rev-ca", "keyv2") == first
    assert await ledger.next_crl_number("other-ca", "keyv1") == first
    # A later instance whose clock runs behind, or far ahead, continues where the numbering is.
    for clock in (NOW - dt.timedelta(days=30), NOW + dt.timedelta(days=30)):
        assert await backing.open(now=lambda c=clock: c).next_crl_number("rev-ca", "keyv1") == \
            await ledger.next_crl_number("rev-ca", "keyv1") - 1
    with pytest.raises(InvalidRequest, match="CRL scope"):
        await ledger.next_crl_number("rev-ca", "key/v1")


async def test_two_instances_starting_a_numbering_at_once_agree_on_its_origin(backing):
    """Instances whose clocks differ start the same empty numbering together: one origin wins,
    and the numbers still come out distinct and dense."""
    instances = [backing.open(now=lambda: NOW), backing.open(now=lambda: NOW + dt.timedelta(hours=1))]
    numbers = await asyncio.gather(*(instances[i % 2].next_crl_number("fresh-ca", "k") for i in range(8)))
    assert len(set(numbers)) == 8
    assert sorted(numbers) == list(range(min(numbers), min(numbers) + 8))
    assert min(numbers) in (crl_number(NOW), crl_number(NOW + dt.timedelta(hours=1)))


async def test_insert_once_is_true_for_exactly_one_caller(backing):
    instances = [backing.open(), backing.open()]
    results = await asyncio.gather(*(instances[i % 2].insert_once("enrollment-used", "c0de1234",
                                                                  {"by": f"device-{i}"}) for i in range(24)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await instances[1].get("enrollment-used", "c0de1234") == {"by": f"device-{winner}"}
    assert await instances[0].get("enrollment-used", "c0de9999") is None
    assert await instances[0].insert_once("enrollment-used", "c0de1234", {"by": f"device-{winner}"}) is False
    assert await instances[0].insert_once("import", "c0de1234", {}) is True  # kinds are separate
    for kind, key, data in (("Bad Kind", "k", {}), ("import", "a/b", {}), ("import", "k", {"n": 1})):
        with pytest.raises(InvalidRequest):
            await instances[0].insert_once(kind, key, data)


async def test_marker_keys_lists_one_kinds_markers_from_a_key_on_in_key_order(backing):
    writer, reader = backing.open(), backing.open()
    for key in ("20271201~fleet~1f~due", "20271108~fleet~2a~expired", "20271108~fleet~2a~due", "20260101~old~3~due"):
        assert await writer.insert_once("device-told", key, {"device": "d"}) is True
    await writer.insert_once("import", "20271201", {})  # another kind: never listed with this one
    assert await reader.marker_keys("device-told") == ["20260101~old~3~due", "20271108~fleet~2a~due",
                                                        "20271108~fleet~2a~expired", "20271201~fleet~1f~due"]
    assert await reader.marker_keys("device-told", from_key="20271108") == [
        "20271108~fleet~2a~due", "20271108~fleet~2a~expired", "20271201~fleet~1f~due"]
    assert await reader.marker_keys("device-told", from_key="20271202") == []
    assert await reader.marker_keys("never-used") == []
    with pytest.raises(InvalidRequest):
        await reader.marker_keys("Bad Kind")


@pytest.mark.parametrize("change, field", [
    (dict(serial="00ab"), "serial"), (dict(serial="-5"), "serial"), (dict(serial="x" * 10), "serial"),
    (dict(ca="bad/ca"), "ca"), (dict(sha256="0" * 64), "sha256"), (dict(der=b""), "der"),
    (dict(not_after=dt.datetime(2027, 1, 1)), "not_after"), (dict(location="attic"), "location"),
    (dict(sans=("dns:lower.prefix",)), "sans"), (dict(sans=("IP:999.1.1.1",)), "sans"),
    (dict(requested_by="a\nb"), "requested_by"), (dict(name="not a vault name"), "name"),
    (dict(der=b"x" * (64 * 1024 + 1)), "der"),
])
async def test_a_malformed_record_is_refused_and_nothing_is_written(ledger, change, field):
    rec = record()
    with pytest.raises(InvalidRequest, match=f"field '{field}'"):
        await ledger.record_certificate(dataclasses.replace(rec, **change))
    assert await ledger.certificate("rev-ca", rec.serial) is None
    assert await ledger.find_serial(rec.serial) == []


async def test_a_malformed_revocation_is_refused(ledger):
    rec = await ledger.record_certificate(record())
    for change in (dict(reason="certificateHold"), dict(revoked_at=dt.datetime(2026, 1, 1)), dict(revoked_by="")):
        with pytest.raises(InvalidRequest):
            await ledger.record_revocation(dataclasses.replace(revocation(rec.serial), **change))
    assert await ledger.revocations("rev-ca") == []

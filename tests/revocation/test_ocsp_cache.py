"""ResponseCache (signing/ocsp.py) with a fake clock: hits, refresh at half validity, LRU eviction,
one signature for concurrent requests, failures; and the answers it keeps: good, revoked and
unknown, no nonce, so requests with different nonces share one signed answer."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from kvca_core.signing import LocalSigner, create_root
from kvca_core.signing.crl import RevokedEntry
from kvca_core.signing.ocsp import (
    ANSWER_BACKDATE,
    ANSWER_VALIDITY,
    GOOD,
    REVOKED,
    UNKNOWN,
    AnswerKey,
    ResponseCache,
    parse_request,
    response_builder,
    sign_response,
)

import ocsp_corpus

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class Signer:
    """A stand-in for the vault signing: counts calls, can be held open or made to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[AnswerKey, dt.datetime]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    def for_key(self, key: AnswerKey):
        async def sign(now: dt.datetime) -> bytes:
            self.calls.append((key, now))
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise RuntimeError("the vault is throttling")
            return f"{key.serial}:{key.status}:{now.isoformat()}".encode()
        return sign


async def settle() -> None:
    """Let every task that can run, run (a few loop turns: no timing involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


def key(serial: int = 1, status: str = GOOD, version: str = "v1") -> AnswerKey:
    return AnswerKey(version, "sha1", serial, status)


@pytest.fixture
def clock():
    return FakeClock()


async def test_a_kept_answer_is_served_until_half_its_validity_is_gone(clock):
    cache, signer = ResponseCache(now=clock), Signer()
    first = await cache.answer(key(), signer.for_key(key()))
    clock.advance(seconds=ANSWER_VALIDITY.total_seconds() / 2 - 1)
    assert await cache.answer(key(), signer.for_key(key())) == first
    assert (len(signer.calls), cache.hits) == (1, 1)
    clock.advance(seconds=1)  # half the validity left: signed afresh
    second = await cache.answer(key(), signer.for_key(key()))
    assert second != first and len(signer.calls) == 2 and signer.calls[1][1] == clock.now
    assert await cache.answer(key(), signer.for_key(key())) == second


async def test_every_part_of_the_key_tells_answers_apart(clock):
    cache, signer = ResponseCache(now=clock), Signer()
    keys = [key(), key(serial=2), key(status=REVOKED), key(status=UNKNOWN), key(version="v2"),
            AnswerKey("v1", "sha256", 1, GOOD)]
    answers = [await cache.answer(k, signer.for_key(k)) for k in keys]
    assert len(signer.calls) == len(keys) == len(cache) and cache.hits == 0
    assert [await cache.answer(k, signer.for_key(k)) for k in keys] == answers and cache.hits == len(keys)


async def test_the_least_recently_served_answer_goes_first(clock):
    cache, signer = ResponseCache(max_entries=2, now=clock), Signer()
    a, b, c = key(1), key(2), key(3)
    await cache.answer(a, signer.for_key(a))
    await cache.answer(b, signer.for_key(b))
    await cache.answer(a, signer.for_key(a))  # a served last: b is the oldest
    await cache.answer(c, signer.for_key(c))
    assert len(cache) == 2
    await cache.answer(a, signer.for_key(a))
    assert [k.serial for k, _ in signer.calls] == [1, 2, 3]  # a still kept
    await cache.answer(b, signer.for_key(b))
    assert [k.serial for k, _ in signer.calls] == [1, 2, 3, 2]  # b was evicted


async def test_concurrent_requests_for_one_answer_sign_once(clock):
    cache, signer = ResponseCache(now=clock), Signer()
    signer.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(cache.answer(key(), signer.for_key(key()))) for _ in range(20)]
    await settle()
    other = asyncio.ensure_future(cache.answer(key(9), signer.for_key(key(9))))
    await settle()
    assert len(signer.calls) == 2  # one for key(), one for key(9), while all wait
    signer.gate.set()
    answers = await asyncio.gather(*waiting)
    assert len(set(answers)) == 1 and len(signer.calls) == 2
    assert await other != answers[0]


async def test_a_cancelled_caller_does_not_cancel_the_signing_others_wait_for(clock):
    cache, signer = ResponseCache(now=clock), Signer()
    signer.gate = asyncio.Event()
    first = asyncio.ensure_future(cache.answer(key(), signer.for_key(key())))
    second = asyncio.ensure_future(cache.answer(key(), signer.for_key(key())))
    await settle()
    first.cancel()
    signer.gate.set()
    assert await second and len(signer.calls) == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_signing_is_not_kept_and_a_valid_answer_stands_in_for_it(clock):
    cache, signer = ResponseCache(now=clock), Signer()
    signer.fail = True
    results = await asyncio.gather(*(cache.answer(key(), signer.for_key(key())) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and len(signer.calls) == 1 and len(cache) == 0
    signer.fail = False
    kept = await cache.answer(key(), signer.for_key(key()))
    signer.fail = True
    clock.advance(minutes=45)  # due for refresh, still valid: the kept answer is served
    assert await cache.answer(key(), signer.for_key(key())) == kept
    clock.advance(minutes=15)  # past its nextUpdate: nothing valid to serve
    with pytest.raises(RuntimeError):
        await cache.answer(key(), signer.for_key(key()))


# --- the answers themselves -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki():
    ca_key, responder_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = asyncio.run(create_root("CN=OCSP Cache CA", LocalSigner(ca_key), years=2, now=START - dt.timedelta(days=1)))
    responder = asyncio.run(create_root("CN=responder", LocalSigner(responder_key), years=1,
                                        now=START - dt.timedelta(days=1)))
    return ca, responder, LocalSigner(responder_key)


def _request(ca, serial: int, nonce: bytes) -> ocsp.OCSPRequest:
    c = ocsp_corpus
    return parse_request(c.request(c.single(c.cert_id(ca, c.integer(serial))),
                                   tail=c.extensions(0xA2, c.nonce(nonce))))


@pytest.mark.parametrize("status, entry", [
    (GOOD, None), (UNKNOWN, None),
    (REVOKED, RevokedEntry(0x5EED, START - dt.timedelta(days=2), "keyCompromise")),
])
async def test_one_signed_answer_serves_requests_with_different_nonces(pki, clock, status, entry):
    ca, responder, signer = pki
    cache = ResponseCache(now=clock)
    requests = [_request(ca, 0x5EED, bytes([i]) * 32) for i in range(3)]

    def sign_for(request):
        async def sign(now: dt.datetime) -> bytes:
            return await sign_response(signer, response_builder(request, entry=entry, now=now, status=status),
                                       responder)
        return sign

    answers = {await cache.answer(AnswerKey.of("v1", r, status), sign_for(r)) for r in requests}
    assert len(answers) == 1 and cache.signed == 1
    answer = ocsp.load_der_ocsp_response(answers.pop())
    assert answer.certificate_status.name == status.upper() and answer.serial_number == 0x5EED
    assert len(answer.extensions) == 0  # no nonce echoed
    assert answer.this_update_utc == START - ANSWER_BACKDATE and answer.next_update_utc == START + ANSWER_VALIDITY
    responder.public_key().verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    if status == REVOKED:
        assert answer.revocation_time_utc == entry.revoked_at and answer.revocation_reason.name == "key_compromise"


def test_a_status_and_an_entry_that_disagree_are_refused(pki):
    ca, _, _ = pki
    request = _request(ca, 7, b"n" * 16)
    with pytest.raises(ValueError):
        response_builder(request, entry=None, now=START, status=REVOKED)
    with pytest.raises(ValueError):
        response_builder(request, entry=RevokedEntry(7, START, "superseded"), now=START, status=UNKNOWN)
    with pytest.raises(ValueError):
        response_builder(request, entry=None, now=START, status="maybe")

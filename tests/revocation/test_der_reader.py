"""signing/der.py against an independent DER encoder (pyasn1, which pkilint brings): what DER
encodes reads back the same, what DER forbids is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.der import encoder
from pyasn1.type import univ

from kvca_core.signing import der

arcs = st.lists(st.integers(min_value=0, max_value=2**70), min_size=1, max_size=8)


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_integers_read_back(n):
    assert der.integer(der.read(encoder.encode(univ.Integer(n)))) == n


@given(st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=39), arcs)
def test_object_identifiers_read_back(first, second, rest):
    dotted = ".".join(map(str, (first, second, *rest)))
    assert der.oid(der.read(encoder.encode(univ.ObjectIdentifier(dotted)))) == dotted


@given(st.binary(max_size=300))
def test_octet_strings_and_sequences_read_back(data):
    encoded = encoder.encode(univ.OctetString(data))
    assert der.octets(der.read(encoded)) == data
    sequence = der.read(b"\x30" + bytes([len(encoded)]) + encoded) if len(encoded) < 0x80 else None
    if sequence is not None:
        assert [der.octets(child) for child in der.children(sequence)] == [data]


def test_a_large_arc_after_2_reads_back():
    assert der.oid(der.read(encoder.encode(univ.ObjectIdentifier("2.999.3")))) == "2.999.3"


@pytest.mark.parametrize("data, says", [
    (b"", "truncated"), (b"\x02", "truncated"), (b"\x02\x01", "claims 1 octets"),
    (b"\x02\x01\x05\x00", "1 octets after"), (b"\x30\x80\x00\x00", "indefinite"),
    (b"\x04\x81\x05hello", "shortest form"), (b"\x04\x82\x00\x05hello", "shortest form"),
    (b"\x04\x85\x01\x00\x00\x00\x00", "length of 5 octets"), (b"\x1f\x81\x00\x00", "high tag number"),
])
def test_what_der_forbids_is_refused(data, says):
    with pytest.raises(der.DerError, match=says):
        der.read(data)


@pytest.mark.parametrize("element, reader, says", [
    (b"\x02\x02\x00\x05", der.integer, "not minimally encoded"),
    (b"\x02\x02\xff\x85", der.integer, "not minimally encoded"),
    (b"\x02\x00", der.integer, "empty"),
    (b"\x06\x02\x2a\x80", der.oid, "empty or truncated"),
    (b"\x06\x03\x2a\x80\x01", der.oid, "not minimally encoded"),
    (b"\x01\x01\x01", der.boolean, "not 0x00 or 0xFF"),
    (b"\x04\x01\x00", der.integer, "tag 0x04"),
])
def test_what_a_reader_forbids_is_refused(element, reader, says):
    with pytest.raises(der.DerError, match=says):
        reader(der.read(element))


def test_children_of_a_primitive_element_are_refused():
    with pytest.raises(der.DerError, match="primitive element"):
        der.children(der.read(b"\x04\x02\x30\x00"))

"""Every payload a person may send to switch an LED means one thing, and any other means nothing.

What a payload on a command topic means (unit tests; the end-to-end ones are in test_node)."""
import pytest
from hypothesis import given, strategies as st

from node import commands
from node.commands import OFF, ON, TOGGLE


@pytest.mark.parametrize("payload, meaning", [
    (b"1", ON), (b"on", ON), (b"ON", ON), (b"On", ON), (b"true", ON), (b"TRUE", ON), (b" 1\n", ON),
    (b"0", OFF), (b"off", OFF), (b"OFF", OFF), (b"false", OFF), (b"False", OFF), (b"0\r\n", OFF),
    (b"toggle", TOGGLE), (b"Toggle", TOGGLE), (b"TOGGLE", TOGGLE),
    (b"", None), (b"2", None), (b"allume", None), (b"o n", None), (b"\xff\xfe", None),
    (b"1" * 9, None), (b"on" + b" " * 64, None), (b"x" * 65536, None), (bytearray(b"on"), ON),
])
def test_parse(payload, meaning):
    assert commands.parse(payload) == meaning


@given(st.binary(max_size=100))
def test_any_bytes_are_a_command_or_none(payload):
    assert commands.parse(payload) in (None, ON, OFF, TOGGLE)

"""VERSION in the shim: answered there, without the agent, exactly as `dispatch.execute` answers.

libcni runs VERSION before every ADD and DEL, so the shim answers it itself; the full plugin is
the reference (json.loads), and every case here compares the two byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_agent_socket import serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sriovkit.cni import shim
from sriovkit.cni.dispatch import execute
from sriovkit.model.cni_result import CNI_VERSIONS


def full(stdin: bytes) -> tuple[int, bytes]:
    return execute({"CNI_COMMAND": "VERSION"}, stdin)


def local(stdin: bytes) -> tuple[int, bytes]:
    answer = shim.version_answer(stdin)
    assert answer is not None, "the shim should not need the full plugin for this input"
    return 0, answer


def test_the_shim_knows_the_same_versions() -> None:
    assert shim.VERSIONS == CNI_VERSIONS


VERSIONED = [json.dumps({"cniVersion": v, "name": "n", "type": "sriov"}).encode() for v in
             (*CNI_VERSIONS, "0.1.0", "9.9.9", "")]  # fmt: skip
TRICKY = [
    b"",
    b"   ",
    b"{}",
    b"[]",
    b"null",
    b'"1.0.0"',
    b'{"cniVersion": "0.4.0"}',
    b' \t\r\n{"cniVersion":"0.4.0"} \n',
    b'{"cniVersion": "0.4.0"}x',  # extra data
    b'{"cniVersion": "0.4.0"} {}',
    b'{"cniVersion": "0.4.0",}',  # trailing comma
    b'{"cniVersion": "0.4.0" "x": 1}',
    b'{"cniVersion": 4}',
    b'{"cniVersion": ["0.4.0"]}',
    b'{"cniVersion": null}',
    b'{"cniVersion": "0.4.0", "cniVersion": "0.3.1"}',  # the last one wins
    b'{"cniVersion": "0.4.0", "cniVersion": 5}',
    b'{"cni\\u0056ersion": "0.4.\\u0030"}',  # escapes are decoded
    b'{"cniVersion": "0.4.0", "x": {"cniVersion": "0.3.0"}}',  # only the top level counts
    b'{"cniVersion": "0.4.0", "x": [1, 2.5, -0, 1e5, 1E-5, -1.5e+3, true, false, null]}',
    b'{"cniVersion": "0.4.0", "x": NaN, "y": Infinity, "z": -Infinity}',
    b'{"cniVersion": "0.4.0", "x": 01}',
    b'{"cniVersion": "0.4.0", "x": 1.}',
    b'{"cniVersion": "0.4.0", "x": .5}',
    b'{"cniVersion": "0.4.0", "x": 1e}',
    b'{"cniVersion": "0.4.0", "x": 1e+}',
    b'{"cniVersion": "0.4.0", "x": -}',
    b'{"cniVersion": "0.4.0", "x": +1}',
    b'{"cniVersion": "0.4.0", "x": tru}',
    b'{"cniVersion": "0.4.0", "x": "tab\there"}',  # a raw control character in a string
    b'{"cniVersion": "0.4.0", "x": "a\\qb"}',  # unknown escape
    b'{"cniVersion": "0.4.0", "x": "\\u12"}',
    b'{"cniVersion": "0.4.0", "x": "\\ud800\\udc00 \\udfff \\u00e9 \\/"}',
    b'{"cniVersion": "0.4.0", "x": "\x7f \xc3\xa9"}',
    b'{"cniVersion": "0.4.0", "x": "\xff"}',  # not UTF-8
    b'{"cniVersion": "0.4.0", "x": "\xed\xa0\x80"}',  # an encoded surrogate (surrogatepass)
    b'{"cniVersion": "0.4.0"\x0c}',  # form feed is not JSON whitespace
    b'{"cniVersion": "0.4.0"\xc2\xa0}',  # nor is a no-break space
    b'{"cniVersion": "0.4.0"',
    b'{"cniVersion": "0.4.0", "x": [1, 2,]}',
    b'{"cniVersion": "0.4.0", "x": [1 2]}',
    b'{"cniVersion": "0.4.0", 1: 2}',
    b'{"cniVersion": "0.4.0", "x": ' + b"1" * 500 + b"}",  # long, but not too long for int()
    b'{"cniVersion": "0.4.0", "x": ' + b"1" * 5000 + b".5}",  # a float has no digit limit
    b"\xef\xbb\xbf" + b'{"cniVersion": "0.4.0"}',  # json.loads takes a UTF-8 BOM in bytes
    b"\xef\xbb\xbf\xef\xbb\xbf" + b'{"cniVersion": "0.4.0"}',
    b"\xff\xfe",
    b"\x00{",
    b"{\x00",
]
ENCODED = [
    json.dumps({"cniVersion": "0.4.0", "é": "€"}, ensure_ascii=False).encode(codec)
    for codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
]


@pytest.mark.parametrize("stdin", VERSIONED + TRICKY + ENCODED)
def test_shim_answers_version_as_the_full_plugin_does(stdin: bytes) -> None:
    assert local(stdin) == full(stdin)


def test_what_the_shim_cannot_be_sure_of_goes_the_full_way() -> None:
    deep = b'{"cniVersion": "0.4.0", "x": ' + b"[" * 200 + b"]" * 200 + b"}"
    huge_int = b'{"cniVersion": "0.4.0", "x": ' + b"1" * 5000 + b"}"
    for stdin in (deep, huge_int):
        assert shim.version_answer(stdin) is None
        # run() then asks the agent, or (here, SRIOVKIT_AGENT=off) the in-process plugin.
        env = {b"CNI_COMMAND": b"VERSION", b"SRIOVKIT_AGENT": b"off"}
        assert shim.run(env, stdin) == full(stdin)
    # A top-level array is never an object with a cniVersion, however deep it goes.
    assert local(b"[" * 5000) == full(b"[" * 5000)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
versions = st.sampled_from([*CNI_VERSIONS, "0.2.0", "", "1.0"]) | st.integers() | st.none()


@st.composite
def configs(draw: Any) -> bytes:
    obj = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4))
    if draw(st.booleans()):
        obj["cniVersion"] = draw(versions)
    text = json.dumps(
        obj,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.none() | st.integers(0, 2)),
        separators=draw(st.sampled_from([None, (",", ":"), (" ,", " : ")])),
    )
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32-le"])))
    mutation = draw(st.sampled_from(["none", "none", "delete", "insert", "truncate"]))
    if mutation != "none" and data:
        at = draw(st.integers(0, len(data) - 1))
        if mutation == "delete":
            data = data[:at] + data[at + 1 :]
        elif mutation == "insert":
            data = (
                data[:at]
                + draw(st.sampled_from(list(b',:{}[]"\\ 0e.-\x00\xff'))).to_bytes(1, "big")
                + data[at:]
            )
        else:
            data = data[:at]
    return data


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_shim_and_full_plugin_agree_on_generated_configs(stdin: bytes) -> None:
    assert local(stdin) == full(stdin)


TOKENS = [
    *("{", "}", "[", "]", ",", ":", '"', "\\", "0", "1", ".", "e", "E", "+", "-", " ", "\n"),
    *("true", "null", "NaN", "-Infinity", "\x0c", "\\u00e9", "\\ud800", "\x01", "é"),
    *('"cniVersion"', '"0.3.1"'),
]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(['{"cniVersion":"0.4.0","x":', '{"cniVersion":"0.4.0",', "{", ""]),
    st.lists(st.sampled_from(TOKENS), max_size=12).map("".join),
    st.sampled_from(["}", "", ',"cniVersion":"0.3.0"}']),
)
def test_shim_and_full_plugin_agree_on_token_soup(head: str, middle: str, tail: str) -> None:
    stdin = (head + middle + tail).encode()
    assert local(stdin) == full(stdin)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_shim_and_full_plugin_agree_on_any_bytes(stdin: bytes) -> None:
    assert local(stdin) == full(stdin)


@pytest.fixture
def listening() -> Iterator[tuple[Path, list[int]]]:
    """A socket that counts the connections made to it (and answers none)."""
    accepted: list[int] = []
    with serving(lambda conn: accepted.append(1), prefix="skver") as path:
        yield path, accepted


def test_version_makes_no_agent_round_trip(
    listening: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, accepted = listening
    monkeypatch.setattr(shim, "SOCKET", str(path))
    stdin = b'{"cniVersion": "0.3.1"}'
    assert shim.run({b"CNI_COMMAND": b"VERSION"}, stdin) == full(stdin)
    assert accepted == []
    shim.run({b"CNI_COMMAND": b"DEL"}, stdin)  # the control: anything else does connect
    assert accepted == [1]

"""conveyor.limits: the JSON depth check, with and without the text it was parsed from."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from conveyor import limits as limits_module
from conveyor.errors import InvalidRequestError
from conveyor.limits import Limits


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


@pytest.mark.parametrize("with_raw", [False, True])
def test_too_deep_is_refused_naming_the_flag(with_raw: bool) -> None:
    raw = _nested(9)
    limits = Limits(max_json_depth=8)
    with pytest.raises(InvalidRequestError, match="deeper than 8 levels"):
        limits.check_json_depth(orjson.loads(raw), raw=raw if with_raw else None)


@pytest.mark.parametrize("with_raw", [False, True])
def test_at_the_limit_passes(with_raw: bool) -> None:
    raw = _nested(8)
    Limits(max_json_depth=8).check_json_depth(orjson.loads(raw), raw=raw if with_raw else None)


def test_a_text_with_few_brackets_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    def walked(doc: Any, limit: int) -> bool:
        raise AssertionError("walked")

    monkeypatch.setattr(limits_module, "json_depth_exceeds", walked)
    raw = b'{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}'
    Limits(max_json_depth=8).check_json_depth(orjson.loads(raw), raw=raw)


def test_brackets_inside_strings_only_cost_a_walk() -> None:
    raw = orjson.dumps({"name": "[[[[{{{{[[[[", "data": [1, 2]})
    assert raw.count(b"[") + raw.count(b"{") > 8
    Limits(max_json_depth=8).check_json_depth(orjson.loads(raw), raw=raw)


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        (b"", 0, True),
        (b"[]", 0, False),
        (b"[{}]", 2, True),
        (b"[{}]", 1, False),
        (b"[[[", 2, False),
        (b'{"a":[1,{"b":[2]}],"c":"[{"}', 5, False),  # inside strings too: an upper bound
        (b'{"a":[1,{"b":[2]}],"c":"[{"}', 6, True),
    ],
)
def test_bracket_bound_counts_both_kinds(raw: bytes, limit: int, expected: bool) -> None:
    assert limits_module._brackets_at_most(raw, limit) is expected
    assert expected is (raw.count(b"[") + raw.count(b"{") <= limit)

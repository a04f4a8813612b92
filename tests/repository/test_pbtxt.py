from __future__ import annotations

import pytest

from conveyor.repository import pbtxt


def test_triton_config_parses() -> None:
    text = """
    name: "simple"   # comment
    platform: "onnxruntime_onnx"
    max_batch_size: 8
    input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] } ]
    output { name: "OUT" data_type: TYPE_FP32 dims: [ -1, 3 ] reshape { shape: [ 3 ] } }
    output { name: "OUT2" data_type: TYPE_STRING dims: 1 }
    dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
    parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
    version_policy: { specific { versions: 1 versions: 3 } }
    optimization { graph { level: -1 } }
    """
    d = pbtxt.loads(text)
    assert d["name"] == "simple"
    assert d["input"] == [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [16]}]
    assert d["output"][0]["reshape"] == {"shape": [3]}
    assert d["output"][1]["dims"] == 1
    assert d["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert d["parameters"] == {"key": "intra_op_thread_count", "value": {"string_value": "1"}}
    assert d["version_policy"]["specific"]["versions"] == [1, 3]
    assert d["optimization"]["graph"]["level"] == -1


def test_scalars_and_escapes() -> None:
    d = pbtxt.loads('a: 1.5 b: true c: "x\\"y" "z" d: 1e3 e: -2')
    assert d == {"a": 1.5, "b": True, "c": 'x"yz', "d": 1000.0, "e": -2}


@pytest.mark.parametrize("bad", ["a {", "a: [1, 2", "a: ", "a: @", "{ }"])
def test_malformed_text_is_an_error(bad: str) -> None:
    with pytest.raises(pbtxt.PbtxtError):
        pbtxt.loads(bad)

from __future__ import annotations

import pytest
import yaml

from conveyor.repository import pbtxt
from conveyor.repository.config import ConfigError, parse_config, to_triton_json

FULL = """
name: m
backend: onnxruntime
max_batch_size: 16
input:
  - {name: x, data_type: TYPE_FP32, dims: [3, -1], reshape: {shape: [3, -1]}}
  - {name: s, data_type: BYTES, dims: [1], optional: true}
output:
  - {name: y, data_type: FP16, dims: [10]}
dynamic_batching:
  preferred_batch_size: [8, 4]
  max_queue_delay_microseconds: 500
  preserve_ordering: true
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy:
    max_queue_size: 10
    default_timeout_microseconds: 1000
    allow_timeout_override: false
    timeout_action: DELAY
  priority_queue_policy:
    1: {max_queue_size: 5}
instance_group: [{count: 2, kind: KIND_CPU}]
version_policy: {latest: {num_versions: 2}}
parameters: {intra_op_thread_count: 1, flag: true}
"""


def test_full_yaml_config() -> None:
    c = parse_config(yaml.safe_load(FULL), "m")
    assert c.max_batch_size == 16
    assert [t.name for t in c.inputs] == ["x", "s"]
    assert c.inputs[0].datatype == "FP32" and c.inputs[0].dims == [3, -1]
    assert c.inputs[1].datatype == "BYTES" and c.inputs[1].optional
    db = c.dynamic_batching
    assert db is not None
    assert db.preferred_batch_size == [4, 8]
    assert db.priority_levels == 3 and db.default_priority_level == 2
    assert db.default_queue_policy.timeout_action == "DELAY"
    assert not db.default_queue_policy.allow_timeout_override
    assert db.priority_queue_policy[1].max_queue_size == 5
    assert c.instance_count == 2 and c.instance_kind == "KIND_CPU"
    assert c.version_policy.kind == "latest" and c.version_policy.num_versions == 2
    assert c.parameters == {"intra_op_thread_count": "1", "flag": "true"}


def test_triton_json_form() -> None:
    j = to_triton_json(parse_config(yaml.safe_load(FULL), "m"))
    assert j["platform"] == "onnxruntime_onnx" and j["backend"] == "onnxruntime"
    assert j["input"][0]["data_type"] == "TYPE_FP32"
    assert j["input"][1]["data_type"] == "TYPE_STRING"
    assert j["output"][0] == {
        "name": "y",
        "data_type": "TYPE_FP16",
        "dims": [10],
        "label_filename": "",
        "is_shape_tensor": False,
    }
    assert j["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert j["instance_group"][0]["count"] == 2
    assert j["parameters"]["intra_op_thread_count"] == {"string_value": "1"}
    assert j["version_policy"] == {"latest": {"num_versions": 2}}


def test_pbtxt_and_yaml_give_the_same_config() -> None:
    text = """
    name: "m" platform: "onnxruntime_onnx" max_batch_size: 4
    input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
    output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
    dynamic_batching { max_queue_delay_microseconds: 100 }
    instance_group [ { count: 1 kind: KIND_CPU } ]
    parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
    version_policy: { all { } }
    """
    y = """
    name: m
    max_batch_size: 4
    input: [{name: x, data_type: TYPE_FP32, dims: [2]}]
    output: [{name: y, data_type: TYPE_FP32, dims: [2]}]
    dynamic_batching: {max_queue_delay_microseconds: 100}
    instance_group: [{count: 1, kind: KIND_CPU}]
    parameters: {intra_op_thread_count: "1"}
    version_policy: {all: {}}
    """
    assert parse_config(pbtxt.loads(text), "m") == parse_config(yaml.safe_load(y), "m")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "other"}, "differs from the directory"),
        ({"max_batch_size": 0, "dynamic_batching": {}}, "needs max_batch_size > 0"),
        ({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [8]}}, "outside"),
        ({"input": [{"name": "x", "data_type": "TYPE_NOPE", "dims": [1]}]}, "unknown datatype"),
        ({"input": [{"name": "x", "data_type": "FP32", "dims": [0]}]}, "positive or -1"),
        ({"instance_group": [{"kind": "KIND_TPU"}]}, "KIND_TPU"),
        ({"version_policy": {"latest": {"num_versions": 0}}}, "num_versions"),
        ({"max_batch_size": "many"}, "must be an integer"),
        ({"version_labels": {"7": 1}}, "non-numeric"),
        ({"traffic_split": {1: -1}}, ">= 0"),
        ({"traffic_split": {1: 0, 2: 0}}, "add up to 0"),
        ({"traffic_split": {1: "lots"}}, "not a number"),
        (
            {
                "max_batch_size": 4,
                "dynamic_batching": {"default_queue_policy": {"timeout_action": "DROP"}},
            },
            "REJECT",
        ),
    ],
)
def test_invalid_configs_say_why(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "m")


@pytest.mark.parametrize("filename", ["../x", "../../../../etc/passwd", "/etc/passwd", "a/../b"])
def test_model_filename_outside_the_version_directory_is_refused(filename: str) -> None:
    with pytest.raises(ConfigError, match=r"default_model_filename .* leaves .*: refused"):
        parse_config({"default_model_filename": filename}, "m")


def test_model_filename_may_name_a_subdirectory() -> None:
    config = parse_config({"default_model_filename": "sub/model.onnx"}, "m")
    assert config.default_model_filename == "sub/model.onnx"
    assert parse_config({}, "m").default_model_filename == "model.onnx"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("parameters", 5, "parameters must be a mapping"),
        ("parameters", [1], "parameters must be a mapping"),
        ("version_labels", "stable", "version_labels must be a mapping"),
        ("traffic_split", [{"value": 1}], "traffic_split must be a mapping"),
        ("dynamic_batching", {"priority_queue_policy": 3}, "priority_queue_policy must be"),
    ],
)
def test_a_map_that_is_not_one_is_a_config_error(field: str, value: object, message: str) -> None:
    """Maps come as mappings or pbtxt's {key, value} entries; anything else names the field
    (it was an AttributeError: a 500 when a load request's config override held it)."""
    raw = {"name": "m", "backend": "onnxruntime", "max_batch_size": 4, field: value}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "m")


def test_maps_as_pbtxt_entries_still_parse() -> None:
    config = parse_config(
        {
            "name": "m",
            "backend": "onnxruntime",
            "parameters": [{"key": "intra_op_thread_count", "value": {"string_value": "1"}}],
            "version_labels": {"key": "stable", "value": 1},
        },
        "m",
    )
    assert config.parameters == {"intra_op_thread_count": "1"}
    assert config.version_labels == {"stable": 1}

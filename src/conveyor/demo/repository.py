"""`conveyor demo-repo DIR`: write the demo model repository (offline, fixed seeds).

Each model shows one way to configure: Triton's config.pbtxt (`simple`), the native
YAML (`linear`, `resnet`), and no config at all, completed from the ONNX file (`mlp`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conveyor.demo import models

SIMPLE_PBTXT = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output [
  { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

LINEAR_YAML = """\
# x·W with W 256x256: small enough that HTTP and the codec decide throughput.
name: linear
backend: onnxruntime
max_batch_size: 64
input:
  - {name: x, data_type: TYPE_FP32, dims: [256]}
output:
  - {name: y, data_type: TYPE_FP32, dims: [256]}
dynamic_batching:
  max_queue_delay_microseconds: 5000   # waited only while another batch is executing
instance_group:
  - {count: 1, kind: KIND_CPU}
parameters:
  intra_op_thread_count: 1
"""

RESNET_YAML = """\
# A ResNet-18-style CNN: 3x224x224 images -> 1000 logits.
name: resnet
backend: onnxruntime
max_batch_size: 8
input:
  - {name: images, data_type: TYPE_FP32, dims: [3, 224, 224]}
output:
  - {name: logits, data_type: TYPE_FP32, dims: [1000]}
dynamic_batching:
  preferred_batch_size: [4, 8]
  max_queue_delay_microseconds: 2000
  default_queue_policy: {max_queue_size: 64}
instance_group:
  - {count: 2, kind: KIND_CPU}   # two sessions, one core each
parameters:
  intra_op_thread_count: 1
"""

BUILDERS: dict[str, tuple[Callable[[Path], None], str | None, str | None]] = {
    # name: (builder, config file name, config text)
    "simple": (models.build_simple, "config.pbtxt", SIMPLE_PBTXT),
    "linear": (models.build_linear, "config.yaml", LINEAR_YAML),
    "mlp": (models.build_mlp, None, None),
    "resnet": (models.build_resnet, "config.yaml", RESNET_YAML),
}


def write_demo_repository(root: Path, names: list[str] | None = None) -> list[str]:
    """Write the demo models under `root` (skipping files already there)."""
    written = []
    for name in names or list(BUILDERS):
        if name not in BUILDERS:
            raise ValueError(f"unknown demo model {name!r} (choose from {', '.join(BUILDERS)})")
        build, config_name, config_text = BUILDERS[name]
        model_file = root / name / "1" / "model.onnx"
        if not model_file.exists():
            tmp = model_file.with_suffix(".onnx.tmp")
            build(tmp)
            tmp.rename(model_file)  # a half-written file is never picked up
        if config_name and config_text:
            (root / name / config_name).write_text(config_text)
        written.append(name)
    return written

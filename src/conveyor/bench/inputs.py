"""Request inputs for V2 models: generated from the model's metadata (seeded random or
zeros), or read from files (a JSON document, `.npy` arrays, images), fitted to the
model's datatype and shape, with the batch dimension filled to `--batch-size`.

JSON files take perf_analyzer's `--input-data` form, `{"data": [{"INPUT": ...}, ...]}`
(the first entry is used), or a plain `{"INPUT": ...}`; a value is a nested list or
`{"content": [flat values], "shape": [...]}`; `{"b64": "..."}` gives bytes.
Images (PNG, JPEG, BMP, ...; needs Pillow: `pip install conveyor[images]`) are decoded
to RGB, resized to the input's H x W, laid out as CHW or HWC as the input's shape says,
and scaled to [0, 1] for floating-point inputs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.datatypes import V2_TO_NUMPY

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def model_inputs(
    metadata: dict[str, Any],
    batch: int,
    shapes: dict[str, list[int]],
    seed: int,
    data: str = "random",
    files: dict[str, Path] | None = None,
) -> dict[str, np.ndarray]:
    """One array per model input. `data`: random | zeros | a JSON file; `files`: arrays
    or images per input name (they win over `data`)."""
    files = files or {}
    known = {t["name"] for t in metadata["inputs"]}
    unknown = sorted(set(files) - known)
    if unknown:
        raise ValueError(f"--input {unknown[0]}: the model has no such input ({sorted(known)})")
    doc = _json_inputs(Path(data)) if data not in ("random", "zeros") else {}
    rng = np.random.default_rng(seed)
    out = {}
    for t in metadata["inputs"]:
        name, datatype, shape = t["name"], t["datatype"], [int(d) for d in t["shape"]]
        batched = bool(shape) and shape[0] == -1 and metadata.get("max_batch_size", 1) != 0
        dims = shapes.get(name) or [
            batch if i == 0 and batched else (1 if d == -1 else d) for i, d in enumerate(shape)
        ]
        if name in files:
            arr = _fit(
                _read_file(files[name], datatype, dims), datatype, shape, dims, batched, name
            )
        elif name in doc:
            arr = _fit(_json_value(doc[name], datatype), datatype, shape, dims, batched, name)
        elif data not in ("random", "zeros"):
            raise ValueError(f"{data}: no data for input {name!r}")
        else:
            arr = _generated(rng, datatype, dims, zeros=data == "zeros")
        out[name] = arr
    return out


def _generated(rng: np.random.Generator, datatype: str, dims: list[int], zeros: bool) -> Any:
    if datatype == "BYTES":
        return np.full(dims, b"" if zeros else b"conveyor", dtype=object)
    if datatype == "BOOL":
        return np.zeros(dims, bool) if zeros else rng.random(dims) < 0.5
    dtype = V2_TO_NUMPY[datatype]
    return np.zeros(dims, dtype) if zeros else (rng.random(dims) * 10).astype(dtype)


def _json_inputs(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--input-data: {path} not found (or use random / zeros)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--input-data {path}: not JSON ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        if not doc["data"]:
            raise ValueError(f"--input-data {path}: 'data' is empty")
        doc = doc["data"][0]
    if not isinstance(doc, dict):
        raise ValueError(f"--input-data {path}: expected an object of input name -> data")
    return doc


def _json_value(value: Any, datatype: str) -> np.ndarray:
    shape = None
    if isinstance(value, dict) and "content" in value:
        value, shape = value["content"], value.get("shape")
    if datatype == "BYTES":
        arr = np.array(_bytes(value), dtype=object)
    else:
        arr = np.asarray(value, dtype=V2_TO_NUMPY[datatype])
    return arr.reshape(shape) if shape is not None else arr


def _bytes(value: Any) -> Any:
    if isinstance(value, list):
        return [_bytes(v) for v in value]
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value.encode() if isinstance(value, str) else value


def _read_file(path: Path, datatype: str, dims: list[int]) -> np.ndarray:
    if not path.exists():
        raise ValueError(f"--input: {path} not found")
    if path.suffix == ".npy":
        arr: np.ndarray = np.load(path, allow_pickle=False)
        return arr
    if datatype == "BYTES" and path.suffix != ".json":
        # a BYTES input takes the file itself (an image for a pipeline that decodes it)
        raw = np.empty(1, dtype=object)
        raw[0] = path.read_bytes()
        return raw
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _image(path, datatype, dims)
    if path.suffix == ".json":
        return _json_value(json.loads(path.read_text()), datatype)
    raise ValueError(
        f"--input {path}: expected .npy, .json or an image ({', '.join(sorted(IMAGE_SUFFIXES))})"
    )


def _image(path: Path, datatype: str, dims: list[int]) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("image inputs need Pillow: pip install 'conveyor[images]'") from None
    sample = dims[1:] if len(dims) == 4 else dims
    if len(sample) != 3 or 3 not in (sample[0], sample[-1]):
        raise ValueError(f"--input {path}: an image needs a 3-channel input, got shape {dims}")
    chw = sample[0] == 3 and sample[-1] != 3
    h, w = (sample[1], sample[2]) if chw else (sample[0], sample[1])
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB").resize((w, h)))
    if chw:
        pixels = pixels.transpose(2, 0, 1)
    dtype = V2_TO_NUMPY.get(datatype, np.float32)
    if np.issubdtype(dtype, np.floating):
        return (pixels / 255.0).astype(dtype)
    return pixels.astype(dtype)


def _fit(
    arr: np.ndarray, datatype: str, shape: list[int], dims: list[int], batched: bool, name: str
) -> Any:
    """Cast to the input's datatype; one sample becomes a batch of `dims[0]` copies. The
    file's own shape must agree with the model's where the model's dims are fixed."""
    if datatype != "BYTES":
        arr = arr.astype(V2_TO_NUMPY[datatype], copy=False)
    given = list(arr.shape)
    if batched and arr.ndim == len(shape) - 1:
        arr = np.repeat(arr[None], dims[0], axis=0)
    if arr.ndim != len(shape) or any(
        m not in (-1, a) for m, a in zip(shape, arr.shape, strict=True)
    ):
        raise ValueError(
            f"input {name!r}: the file's shape {given} does not fit the model's {shape}"
        )
    return arr

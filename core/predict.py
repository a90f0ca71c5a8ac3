"""`catalogue predict`'s back ends: an exported SavedModel or a running TF Serving REST API, and outputs
written as files (images and audio a model returns, detections drawn on the input photo)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "wav"), (b"GIF8", "gif"), (b"BM", "bmp"))


def ask_saved_model(model_path: Path, request: Mapping[str, Any], signature: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from core import export as export_lib

    loaded = tf.saved_model.load(str(export_lib.resolve_saved_model(model_path)))
    if signature not in loaded.signatures:
        raise SystemExit(f"error: {model_path} has no signature {signature!r}; it has {sorted(loaded.signatures)}")
    return export_lib.call_signature(loaded, signature, request)


def ask_server(url: str, model: str, request: Mapping[str, Any], signature: str,
               timeout: float = 120.0) -> dict[str, np.ndarray]:
    """POSTs the request to `<url>/v1/models/<model>:predict` (columnar JSON) and returns numpy outputs."""
    from core.serving.testing import columnar_body

    base = url.rstrip("/")
    body = json.dumps(columnar_body(request, signature)).encode()
    answer = _http_json(f"{base}/v1/models/{model}:predict", body, timeout)
    outputs = answer["outputs"]
    if not isinstance(outputs, dict):  # a lone output comes back unnamed: ask the metadata for its name
        meta = _http_json(f"{base}/v1/models/{model}/metadata", None, timeout)
        defs = meta["metadata"]["signature_def"]["signature_def"][signature]["outputs"]
        outputs = {next(iter(defs)): outputs}
    return {name: _to_numpy(value) for name, value in outputs.items()}


def _http_json(url: str, body: bytes | None, timeout: float) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise SystemExit(f"error: {url} answered {err.code}: {detail}") from None
    except urllib.error.URLError as err:
        raise SystemExit(f"error: cannot reach {url}: {err.reason}") from None


def _to_numpy(value) -> np.ndarray:
    """TF Serving JSON -> numpy: {"b64": ...} and strings become bytes, as a SavedModel returns them."""
    def convert(x):
        if isinstance(x, dict) and set(x) == {"b64"}:
            return base64.b64decode(x["b64"])
        if isinstance(x, str):
            return x.encode()
        if isinstance(x, list):
            return [convert(v) for v in x]
        return x

    converted = convert(value)
    flat = converted
    while isinstance(flat, list) and flat:
        flat = flat[0]
    return np.array(converted, dtype=object) if isinstance(flat, bytes) else np.asarray(converted)


def readable_rows(outputs: Mapping[str, np.ndarray]) -> list[dict]:
    """One {output: value} dict per input row, bytes shown as text (or their size when binary)."""
    rows = len(next(iter(outputs.values()))) if outputs else 0
    return [{name: jsonable(value[i]) for name, value in outputs.items()} for i in range(rows)]


def jsonable(value):
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return f"<{len(value)} bytes>"
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_files(out_dir: str | Path, raw_input: str, index: int, row: Mapping[str, np.ndarray]) -> list[str]:
    """Writes one input's outputs as files under out_dir; returns their paths.

    Encoded media (`*_bytes` outputs: PNG, JPEG, WAV) are written as they are; `boxes` (normalised
    y1, x1, y2, x2) with `classes`/`scores` are drawn on the input photo when the input is an image file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(raw_input).stem if Path(raw_input).exists() else f"input{index}"
    written = []
    for name, value in row.items():
        data = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
        if name.endswith("_bytes") and isinstance(data, bytes) and data:
            extension = next((ext for magic, ext in MAGIC if data.startswith(magic)), "bin")
            label = name.removesuffix("_bytes").removesuffix(f"_{extension}")
            path = out / f"{stem}_{label}.{extension}"
            path.write_bytes(data)
            written.append(str(path))
    if "boxes" in row and Path(raw_input).is_file():
        path = out / f"{stem}_detections.png"
        draw_boxes(Path(raw_input), row, path)
        written.append(str(path))
    return written


def draw_boxes(image_path: Path, row: Mapping[str, np.ndarray], path: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.open(image_path).convert("RGB")
    scale = max(1, 512 // max(image.size))  # small scenes are enlarged so labels stay legible
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    count = int(row["num_detections"]) if "num_detections" in row else len(row["boxes"])
    classes = row.get("classes", [b""] * count)
    scores = row.get("scores", [0.0] * count)
    for box, label, score in list(zip(row["boxes"], classes, scores))[:count]:
        y1, x1, y2, x2 = (float(v) for v in box)
        rect = (x1 * image.width, y1 * image.height, x2 * image.width, y2 * image.height)
        draw.rectangle(rect, outline=(255, 32, 32), width=2)
        text = f"{label.decode() if isinstance(label, bytes) else label} {float(score):.2f}"
        draw.text((rect[0] + 2, max(rect[1] - 12, 0)), text, fill=(255, 255, 0))
    image.save(path)

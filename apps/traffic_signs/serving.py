"""Exported endpoints of the traffic-sign detector (stock TF ops only: NMS is in the graph).

serving_default: image_bytes (string [N], encoded JPEG/PNG/GIF/BMP of any size),
                 score_threshold (float32 [1] or [N], optional, default [Config.score_threshold]),
                 max_detections (int32 [1] or [N], optional, default [Config.max_detections])
                 -> boxes (float32 [N, max_detections, 4], normalised y1, x1, y2, x2 in the input photo),
                    classes (string [N, max_detections], "" past num_detections),
                    class_ids (int32 [N, max_detections], GTSRB ClassId, -1 past num_detections),
                    scores (float32 [N, max_detections], 0 past num_detections),
                    num_detections (int32 [N])
detect_images:   images (float32 [N, H, W, 3], 0..255) + the same optional inputs -> the same outputs
classify_crops:  image_bytes (string [N], pre-cropped signs) -> classes, class_ids (int32), scores [N, top_k]

The optional inputs are Python defaults of the tf.functions: SavedModel records them in the
SignatureDef's `defaults` (PlaceholderWithDefault inputs), so TF Serving clients may leave them out.
"""

from __future__ import annotations

import tensorflow as tf

from apps.traffic_signs.model import classifier, detector
from core.data import decode_resize_images
from core.export import run_model


def class_peaks(heatmap: tf.Tensor, regression: tf.Tensor, candidates: int):
    """The heatmap's own classes: (boxes [N, K, 4], per-class scores [N, K, C]) for `nms`.

    Peaks are cells that equal the max of their 3x3 neighbourhood; each of the `candidates` best
    (cell, class) peaks scores only for its own class.
    """
    boxes, scores, class_index = _peak_boxes(heatmap, regression, candidates)
    return boxes, tf.one_hot(class_index, tf.shape(heatmap)[-1]) * scores[..., None]


def refine_with_classifier(images, heatmap, regression, classify_model, *, crop_size: int, candidates: int):
    """Class-agnostic peaks named by the crop classifier: (boxes [N, K, 4], per-class scores [N, K, C]).

    The stride-4 heatmap finds signs well but confuses look-alike classes (speed limits 30/50/80);
    the crop classifier sees each sign at `crop_size` pixels. Each of the `candidates` strongest peaks
    (over all classes) is cut out of the image with the ~10% border the classifier was trained with,
    and its score for class c becomes peak strength x classifier probability of c.
    """
    objectness = tf.reduce_max(heatmap, axis=-1, keepdims=True)
    boxes, scores, _ = _peak_boxes(objectness, regression, candidates)
    height, width = tf.shape(boxes)[0], tf.shape(boxes)[1]
    flat = tf.reshape(boxes, [-1, 4])
    border = tf.stack([flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]] * 2, axis=-1) * 0.1
    crops = tf.image.crop_and_resize(
        tf.cast(images, tf.float32), flat + border * tf.constant([-1.0, -1.0, 1.0, 1.0]),
        tf.repeat(tf.range(height), width), (crop_size, crop_size))
    probabilities = tf.cast(run_model(classify_model, crops), tf.float32)
    per_class = tf.reshape(probabilities, [height, width, -1]) * scores[..., None]
    return boxes, per_class


def _peak_boxes(heatmap: tf.Tensor, regression: tf.Tensor, candidates: int):
    """The `candidates` best (cell, class) peaks of a heatmap -> (boxes [N, K, 4], scores, class index)."""
    heatmap, regression = tf.cast(heatmap, tf.float32), tf.cast(regression, tf.float32)
    shape = tf.shape(heatmap)
    batch, rows, cols, num_classes = shape[0], shape[1], shape[2], shape[3]
    pooled = tf.nn.max_pool2d(heatmap, 3, 1, "SAME")
    peaks = tf.where(tf.equal(heatmap, pooled), heatmap, tf.zeros_like(heatmap))
    flat = tf.reshape(peaks, [batch, -1])
    k = tf.minimum(candidates, tf.shape(flat)[1])
    scores, index = tf.math.top_k(flat, k=k)
    class_index = index % num_classes
    cell = index // num_classes
    y = tf.cast(cell // cols, tf.float32)
    x = tf.cast(cell % cols, tf.float32)
    reg = tf.gather(tf.reshape(regression, [batch, -1, 4]), cell, batch_dims=1)
    rows_f, cols_f = tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)
    cy, cx = (y + reg[..., 0]) / rows_f, (x + reg[..., 1]) / cols_f
    half_h = tf.exp(tf.clip_by_value(reg[..., 2], -4.0, 6.0)) / rows_f / 2
    half_w = tf.exp(tf.clip_by_value(reg[..., 3], -4.0, 6.0)) / cols_f / 2
    boxes = tf.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)
    return boxes, scores, class_index


def nms(boxes, per_class, *, score_threshold, max_detections, iou_threshold: float):
    """Per-class NMS over [N, K, 4] boxes with [N, K, C] scores (tf.image.combined_non_max_suppression
    removes the duplicates neighbouring peaks of one sign leave) -> (normalised boxes [N, D, 4],
    scores [N, D], class indices int32 [N, D], num_detections [N])."""
    # Zero scores stand for "not this class": keep the threshold strictly above them.
    threshold = tf.maximum(tf.cast(score_threshold, tf.float32), 1e-6)
    out = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], per_class, max_output_size_per_class=max_detections,
        max_total_size=max_detections, iou_threshold=iou_threshold, score_threshold=threshold,
        pad_per_class=False, clip_boxes=True)
    return out.nmsed_boxes, out.nmsed_scores, tf.cast(out.nmsed_classes, tf.int32), out.valid_detections


def check_options(score_threshold, max_detections):
    checks = [
        tf.debugging.assert_greater_equal(score_threshold, 0.0, message="score_threshold must be in [0, 1]"),
        tf.debugging.assert_less_equal(score_threshold, 1.0, message="score_threshold must be in [0, 1]"),
        tf.debugging.assert_positive(max_detections, message="max_detections must be positive"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(score_threshold), tf.identity(max_detections)


def per_image(values: tf.Tensor, batch: tf.Tensor, name: str) -> tf.Tensor:
    """[1] or [batch] option values -> [batch], or a clear error naming the input."""
    values = tf.reshape(values, [-1])
    n = tf.shape(values)[0]
    ok = tf.logical_or(tf.equal(n, 1), tf.equal(n, batch))
    check = tf.debugging.Assert(ok, [f"{name} must hold one value, or one per image; received", n,
                                     "values for", batch, "images"])
    with tf.control_dependencies([check]):
        return tf.broadcast_to(values, [batch])


def make_endpoints(model, class_ids: list[int], class_names: list[str], *, serve_size: int, crop_size: int,
                   score_threshold: float, max_detections: int, candidates: int, iou_threshold: float,
                   top_k: int, refine_candidates: int = 0, crop_views: int = 1) -> dict:
    detect_model = detector(model)
    classify_model = classifier(model)
    classify_views = classifier(model, views=crop_views)
    names = tf.constant(class_names)
    ids = tf.constant(class_ids, tf.int32)
    size = (serve_size, serve_size)
    k = min(top_k, len(class_names))

    def detect(images, threshold, limit):
        threshold, limit = check_options(threshold, limit)
        batch = tf.shape(images)[0]
        threshold, limit = per_image(threshold, batch, "score_threshold"), per_image(limit, batch, "max_detections")
        heatmap, regression = run_model(detect_model, images)
        # One NMS for the batch at the loosest setting, then each image's own threshold and limit.
        if refine_candidates:
            boxes, per_class = refine_with_classifier(images, heatmap, regression, classify_model,
                                                      crop_size=crop_size, candidates=refine_candidates)
        else:
            boxes, per_class = class_peaks(heatmap, regression, candidates)
        # (The clamps only matter for an empty request, where the min and max of no values are +-inf.)
        boxes, scores, index, count = nms(boxes, per_class, score_threshold=tf.minimum(tf.reduce_min(threshold), 1.0),
                                          max_detections=tf.maximum(tf.reduce_max(limit), 1),
                                          iou_threshold=iou_threshold)
        slots = tf.range(tf.shape(scores)[1])[None, :]
        # NMS returns each image's detections best first, so the ones above its threshold lead.
        above = tf.reduce_sum(tf.cast((slots < count[:, None]) & (scores >= threshold[:, None]), tf.int32), 1)
        count = tf.minimum(above, limit)
        valid = slots < count[:, None]
        return {
            "boxes": tf.where(valid[..., None], boxes, 0.0),
            "scores": tf.where(valid, scores, 0.0),
            "class_ids": tf.where(valid, tf.gather(ids, index), -1),
            "classes": tf.where(valid, tf.gather(names, index), ""),
            "num_detections": count,
        }

    # Shape [n] (one value for all images, or one per image) rather than scalars: TF Serving's request
    # batching concatenates every input along a leading batch dimension and refuses scalar inputs.
    options = [tf.TensorSpec([None], tf.float32, name="score_threshold"),
               tf.TensorSpec([None], tf.int32, name="max_detections")]
    default_threshold = tf.constant([float(score_threshold)], tf.float32)
    default_limit = tf.constant([int(max_detections)], tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"), *options])
    def serve_image_bytes(image_bytes, score_threshold=default_threshold, max_detections=default_limit):
        return detect(decode_resize_images(image_bytes, size), score_threshold, max_detections)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images"), *options])
    def detect_images(images, score_threshold=default_threshold, max_detections=default_limit):
        return detect(tf.image.resize(images, size, antialias=True), score_threshold, max_detections)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def classify_crops(image_bytes):
        probabilities = run_model(classify_views, decode_resize_images(image_bytes, (crop_size, crop_size)))
        scores, index = tf.math.top_k(tf.cast(probabilities, tf.float32), k=k)
        return {"classes": tf.gather(names, index), "class_ids": tf.gather(ids, index), "scores": scores}

    return {"serving_default": serve_image_bytes, "detect_images": detect_images,
            "classify_crops": classify_crops}

"""Exported endpoints of the image classifier (stock TF ops only).

serving_default: image_bytes (string [N], encoded JPEG/PNG/GIF/BMP of any size)
                 -> classes (string [N, k]), scores (float32 [N, k])
predict_images:  images (float32 [N, H, W, 3], 0..255, any H and W) -> the same outputs
classify_tpu:    a function alias, not a signature: images (float32 [N, S, S, 3]) -> probabilities,
                 jit-compiled for the TPU inference converter
"""

from __future__ import annotations

import tensorflow as tf

from core.data import decode_resize_images
from core.export import TpuAlias, run_model


def make_endpoints(model, class_names: list[str], image_size: int, top_k: int) -> dict:
    labels = tf.constant(class_names)
    k = min(top_k, len(class_names))
    size = (image_size, image_size)

    def top(probabilities):
        scores, ids = tf.math.top_k(tf.cast(probabilities, tf.float32), k=k)
        return {"classes": tf.gather(labels, ids), "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        return top(run_model(model, decode_resize_images(image_bytes, size)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def predict_images(images):
        resized = tf.image.resize(images, size, antialias=True)
        return top(run_model(model, resized))

    # The model on preprocessed images, jit-compiled: what the TPU inference converter takes.
    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name="images")])
    def classify_tpu(images):
        return {"probabilities": tf.cast(model(images, training=False), tf.float32)}

    return {"serving_default": serve_image_bytes, "predict_images": predict_images,
            "classify_tpu": TpuAlias(classify_tpu)}

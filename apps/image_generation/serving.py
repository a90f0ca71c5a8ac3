"""Exported endpoints of the image generator (stock TF ops only).

serving_default: label (string [N]: a class name, or "" for a random class), seed (int64 [N])
                 -> image_png_bytes (string [N]), label (string [N]: the class drawn)
generate_images: the same inputs -> images (float32 [N, S, S, 3] in 0..255), label (string [N])
interpolate:     label, seed_from, seed_to, steps (int64 [N], 2..16)
                 -> strip_png_bytes (string [N]: `steps` images side by side, the noise moving along a
                 great circle from seed_from's to seed_to's), label (string [N])

A seed becomes the noise through a stateless random op, so one seed and label give the same image in
every call, in predict() and in the exported model alike. With `candidates` > 1 a seed draws that many
noises and keeps the one whose image the discriminator's class head reads as the label most surely.
"""

from __future__ import annotations

import tensorflow as tf

from apps.image_generation.model import UNCONDITIONAL_CLASSES
from core.data import check_utf8
from core.export import run_model

MAX_STEPS = 16  # images per interpolation strip


def noise_for(seeds: tf.Tensor, latent_dim: int, draw: int = 0) -> tf.Tensor:
    """int64 seeds [N] -> standard normal noise [N, latent_dim], a pure function of each seed and `draw`."""
    stream = draw + 1 if draw else 0  # stream 1 draws random classes
    return tf.map_fn(
        lambda s: tf.random.stateless_normal([latent_dim], seed=tf.stack([s, tf.constant(stream, tf.int64)])),
        tf.cast(seeds, tf.int64), fn_output_signature=tf.TensorSpec([latent_dim], tf.float32))


def random_classes(seeds: tf.Tensor, num_classes: int) -> tf.Tensor:
    """int64 seeds [N] -> a class id each, drawn uniformly by a stateless op (for label "")."""
    return tf.map_fn(
        lambda s: tf.random.stateless_uniform([], seed=tf.stack([s, tf.constant(1, tf.int64)]), minval=0,
                                              maxval=num_classes, dtype=tf.int32),
        tf.cast(seeds, tf.int64), fn_output_signature=tf.TensorSpec([], tf.int32))


def class_ids(label: tf.Tensor, seeds: tf.Tensor, class_names: list[str]) -> tf.Tensor:
    """Class names (or "") [N] -> ids [N], or InvalidArgument naming the unknown ones and the valid ones."""
    names = tf.constant(class_names)
    label = check_utf8(label, "label")
    matches = tf.equal(label[:, None], names[None, :])
    random = tf.equal(label, "")
    known = tf.reduce_any(matches, axis=1) | random
    listed = ", ".join(class_names[:50]) + (f" ... ({len(class_names)} in all)"
                                                              if len(class_names) > 50 else "")
    valid = (f"; valid labels: {listed} (or an empty label for a random class)" if class_names != UNCONDITIONAL_CLASSES
             else "; this generator is unconditional: every label must be empty")
    check = tf.debugging.Assert(tf.reduce_all(known), [
        "Invalid label: unknown class name(s)", tf.boolean_mask(label, tf.logical_not(known)), valid],
        summarize=8)
    with tf.control_dependencies([check]):
        chosen = tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32)
        return tf.where(random, random_classes(seeds, len(class_names)), chosen)


def check_same_rows(name: str, tensor: tf.Tensor, label: tf.Tensor) -> tf.Operation:
    return tf.debugging.assert_equal(tf.shape(tensor)[0], tf.shape(label)[0], message=(
        f"Invalid {name}: expected one {name} per label (the same number of rows)"))


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] -> uint8 0..255."""
    return tf.cast(tf.round(tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def make_sampler(generator, latent_dim: int, discriminator=None, candidates: int = 1):
    """-> (sample, kept_noise). sample: (class ids [N], seeds [N]) -> images [N, S, S, 3] in [-1, 1], what
    every endpoint, the per-epoch sample grids and evaluate() call, so they all draw the same image for the
    same seed; kept_noise: the same inputs -> the noise [N, latent] each of those images comes from. With a
    discriminator and candidates > 1, each seed draws `candidates` noises and keeps the one whose image the
    discriminator's class head gives the highest log-probability of the label."""
    chooses = discriminator is not None and candidates > 1

    def choose(ids, seeds):  # -> (kept noise [N, latent], its images)
        # [N, K, latent] -> one generator and one discriminator call over the N * K candidates
        noise = tf.reshape(tf.stack([noise_for(seeds, latent_dim, d) for d in range(candidates)], axis=1),
                           [-1, latent_dim])
        repeated = tf.repeat(ids, candidates)
        images = tf.cast(run_model(generator, [noise, repeated]), tf.float32)
        _, logits = run_model(discriminator, [images, repeated])
        sure = tf.gather(tf.nn.log_softmax(tf.cast(logits, tf.float32)), repeated, batch_dims=1)
        best = tf.argmax(tf.reshape(sure, [-1, candidates]), axis=1, output_type=tf.int32)

        def pick(t):  # [N * K, ...] -> the best of each seed's K rows [N, ...]
            return tf.gather(tf.reshape(t, tf.concat([[-1, candidates], tf.shape(t)[1:]], 0)), best, batch_dims=1)

        return pick(noise), pick(images)

    def sample(ids, seeds):
        ids = tf.cast(ids, tf.int32)
        if chooses:
            return choose(ids, seeds)[1]
        return tf.cast(run_model(generator, [noise_for(seeds, latent_dim), ids]), tf.float32)

    def kept_noise(ids, seeds):  # without a choice, no image needs drawing to know the noise
        return choose(tf.cast(ids, tf.int32), seeds)[0] if chooses else noise_for(seeds, latent_dim)

    return sample, kept_noise


def slerp(a: tf.Tensor, b: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Points along the great circle from a to b (noise vectors) at fractions t [K] -> [K, latent]."""
    cos = tf.reduce_sum(a * b) / (tf.norm(a) * tf.norm(b))
    omega = tf.acos(tf.clip_by_value(cos, -1.0 + 1e-6, 1.0 - 1e-6))
    t = t[:, None]
    return (tf.sin((1.0 - t) * omega) * a + tf.sin(t * omega) * b) / tf.sin(omega)


def make_endpoints(generator, class_names: list[str], latent_dim: int, image_size: int, discriminator=None,
                   candidates: int = 1) -> dict:
    sample, kept_noise = make_sampler(generator, latent_dim, discriminator, candidates)
    names = tf.constant(class_names)
    label_spec = tf.TensorSpec([None], tf.string, name="label")

    def drawn(label, seed):
        with tf.control_dependencies([check_same_rows("seed", seed, label)]):
            ids = class_ids(label, seed, class_names)
        return ids, sample(ids, seed)

    @tf.function(input_signature=[label_spec, tf.TensorSpec([None], tf.int64, name="seed")])
    def serve(label, seed):
        ids, images = drawn(label, seed)
        pngs = tf.map_fn(tf.io.encode_png, to_uint8(images), fn_output_signature=tf.string)
        return {"image_png_bytes": pngs, "label": tf.gather(names, ids)}

    @tf.function(input_signature=[label_spec, tf.TensorSpec([None], tf.int64, name="seed")])
    def generate_images(label, seed):
        ids, images = drawn(label, seed)
        return {"images": tf.cast(to_uint8(images), tf.float32), "label": tf.gather(names, ids)}

    @tf.function(input_signature=[label_spec, tf.TensorSpec([None], tf.int64, name="seed_from"),
                                  tf.TensorSpec([None], tf.int64, name="seed_to"),
                                  tf.TensorSpec([None], tf.int64, name="steps")])
    def interpolate(label, seed_from, seed_to, steps):
        checks = [check_same_rows(n, t, label) for n, t in
                  (("seed_from", seed_from), ("seed_to", seed_to), ("steps", steps))]
        checks.append(tf.debugging.Assert(tf.reduce_all((steps >= 2) & (steps <= MAX_STEPS)), [
            f"Invalid steps: expected 2 to {MAX_STEPS} images per strip; received", steps], summarize=8))
        with tf.control_dependencies(checks):
            ids = class_ids(label, seed_from, class_names)
        start, end = kept_noise(ids, seed_from), kept_noise(ids, seed_to)  # the noises serving_default keeps

        def strip(row):
            a, b, class_id, k = row
            z = slerp(a, b, tf.linspace(0.0, 1.0, tf.cast(k, tf.int32)))
            images = to_uint8(generator([z, tf.fill([tf.shape(z)[0]], class_id)], training=False))
            # [K, S, S, 3] -> [S, K * S, 3]: the images side by side
            side_by_side = tf.reshape(tf.transpose(images, [1, 0, 2, 3]), [image_size, -1, 3])
            return tf.io.encode_png(side_by_side)

        pngs = tf.map_fn(strip, (start, end, ids, steps), fn_output_signature=tf.string)
        return {"strip_png_bytes": pngs, "label": tf.gather(names, ids)}

    return {"serving_default": serve, "generate_images": generate_images, "interpolate": interpolate}

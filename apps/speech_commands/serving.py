"""Exported endpoints of the keyword spotter (stock TF ops only).

serving_default:  audio_wav_bytes (string [N], 16-bit PCM WAV at any rate from 1 to 384 kHz, mono or
                  multi-channel, any length up to max_seconds) -> label (string [N]),
                  scores (float32 [N, C]), labels (string [N, C]: the class of each score)
predict_waveform: waveform (float32 [N, T] at the model rate, any T) -> the same outputs
"""

from __future__ import annotations

import tensorflow as tf

from apps.speech_commands.audio import fix_length, load_clip
from core.export import run_model


def make_endpoints(model, class_names: list[str], config) -> dict:
    names = tf.constant(class_names)
    samples = config.clip_samples

    def answer(probabilities):
        scores = tf.cast(probabilities, tf.float32)
        n = tf.shape(scores)[0]
        # labels is repeated per example so every output has the batch dimension TF Serving's
        # row format ("instances") requires.
        return {"label": tf.gather(names, tf.argmax(scores, axis=-1)), "scores": scores,
                "labels": tf.tile(names[None, :], [n, 1])}

    def clip(data):
        return load_clip(data, config.sample_rate, config.clip_seconds, config.max_seconds, "audio_wav_bytes")

    # autograph=False: the graph is plain TF ops with no Python control flow to convert (and autograph
    # re-reads source files at trace time, which breaks when they change under a running process).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="audio_wav_bytes")], autograph=False)
    def serve_wav_bytes(audio_wav_bytes):
        # Clips decode and resample independently: let the graph run several at once.
        waves = tf.map_fn(clip, audio_wav_bytes, fn_output_signature=tf.TensorSpec([samples], tf.float32),
                          parallel_iterations=16)
        return answer(run_model(model, waves))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")], autograph=False)
    def predict_waveform(waveform):
        return answer(run_model(model, fix_length(waveform, samples)))

    return {"serving_default": serve_wav_bytes, "predict_waveform": predict_waveform}

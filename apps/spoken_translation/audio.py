"""Speech in, characters out: the audio and text forms training and the exported endpoints share.

WAV bytes (any rate, any length up to max_seconds) -> mono float32 waveform at the model rate, whole
(speech_commands' band-limited resampler, no cut to a fixed length) -> right-padded with zeros to a
whole number of model steps. The log-mel spectrogram itself is the recognizer's first layer.

Transcripts are scored and learned in one written form: lowercase letters, apostrophes and single
spaces; numbers are spelled out (num2words), other characters dropped.
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from apps.speech_commands.audio import MAX_RATE, MIN_RATE, encode_wav, resample
from core.data import decode_wav

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"  # CTC classes 0..27; class 28 is the blank
BLANK = len(ALPHABET)
NUM_CLASSES = len(ALPHABET) + 1

__all__ = ["ALPHABET", "BLANK", "NUM_CLASSES", "encode_wav", "label_ids", "load_waveform", "normalize_text",
           "pad_to_steps", "waveform_batch"]


def _spell_number(match: re.Match) -> str:
    from num2words import num2words

    return " " + num2words(int(match.group(0))) + " "


def normalize_text(text: str) -> str:
    """The transcript form: 'Press 1, then #.' -> 'press one then'."""
    text = re.sub(r"\d+", _spell_number, text.lower().replace("’", "'"))
    text = re.sub(r"[^a-z' ]+", " ", text.replace("-", " "))
    text = re.sub(r"(^| )'+|'+( |$)", " ", text)  # quotes, not apostrophes inside words
    return re.sub(r" +", " ", text).strip()


def label_ids(text: str) -> np.ndarray:
    """A normalized transcript -> int32 CTC labels (classes of ALPHABET)."""
    return np.array([ALPHABET.index(c) for c in text], np.int32)


def load_waveform(data: tf.Tensor, sample_rate: int, max_seconds: float,
                  input_name: str = "audio_wav_bytes") -> tf.Tensor:
    """One encoded WAV -> float32 [T] at `sample_rate`, refused (naming the input) when empty or too long."""
    wave, rate = decode_wav(data, input_name)
    samples = tf.shape(wave)[0]
    rate_ok = tf.debugging.Assert(
        tf.logical_and(rate >= MIN_RATE, rate <= MAX_RATE),
        [f"Unsupported sample rate in {input_name}: received", rate,
         f"Hz; the model runs at {sample_rate} Hz and resamples from {MIN_RATE}..{MAX_RATE} Hz"])
    not_empty = tf.debugging.Assert(samples > 0, [f"Empty {input_name}: the WAV holds no audio samples"])
    seconds = tf.cast(samples, tf.float32) / tf.cast(tf.maximum(rate, 1), tf.float32)
    short_enough = tf.debugging.Assert(
        seconds <= max_seconds,
        [f"{input_name} is too long: received", seconds, f"seconds; the cap is {max_seconds} s"])
    with tf.control_dependencies([rate_ok, not_empty, short_enough]):
        out = tf.cast(tf.math.ceil(seconds * sample_rate), tf.int32)
        return tf.cond(tf.equal(rate, sample_rate), lambda: tf.identity(wave),
                       lambda: resample(wave, rate, sample_rate, out))


def pad_to_steps(waves: tf.Tensor, step_samples: int) -> tf.Tensor:
    """[N, T] -> [N, T'] with T' the next multiple of step_samples (zeros on the right)."""
    length = tf.shape(waves)[1]
    return tf.pad(waves, [[0, 0], [0, (-length) % step_samples]])


def waveform_batch(wav_bytes: tf.Tensor, config, input_name: str = "audio_wav_bytes"):
    """WAV bytes [N] -> (waveforms [N, T] zero-padded to whole model steps, their lengths [N] in samples)."""
    def one(data):
        return load_waveform(data, config.sample_rate, config.max_seconds, input_name)

    ragged = tf.map_fn(one, wav_bytes, parallel_iterations=8,
                       fn_output_signature=tf.RaggedTensorSpec([None], tf.float32, ragged_rank=0))
    waves = pad_to_steps(ragged.to_tensor(), config.step_samples)
    return waves, tf.cast(ragged.row_lengths(), tf.int32)

"""The audio front end that training and the exported endpoints share (stock TF ops only).

WAV bytes (any rate, any length up to a cap) -> mono float32 waveform at the model rate
(band-limited resampling in the graph) -> a fixed-length clip cut around its energy centre
-> log-mel spectrogram (the first layer of the model).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from core.data import decode_wav, read_bytes

MIN_RATE, MAX_RATE = 1000, 384000


def resample(wave: tf.Tensor, rate: tf.Tensor, target_rate: int, out_samples: int, zeros: int = 8) -> tf.Tensor:
    """Band-limited (Hann-windowed sinc) resampling of a mono clip to `out_samples` at `target_rate`.

    Works for any input rate with stock ops (gather, sin, cos): each output sample is a weighted sum
    of the input samples around its position; when downsampling the sinc is widened so that content
    above the new Nyquist frequency is removed instead of aliased.
    """
    rate_f = tf.cast(rate, tf.float32)
    step = rate_f / float(target_rate)  # input samples per output sample
    cutoff = tf.minimum(1.0, 1.0 / step)  # relative to the input Nyquist frequency
    half = tf.cast(tf.math.ceil(zeros / cutoff), tf.int32)
    positions = tf.range(out_samples, dtype=tf.float32) * step
    base = tf.cast(tf.floor(positions), tf.int32)
    taps = tf.range(-half + 1, half + 1)
    index = base[:, None] + taps[None, :]
    distance = positions[:, None] - tf.cast(index, tf.float32)
    x = cutoff * distance
    sinc = tf.where(tf.abs(x) < 1e-6, tf.ones_like(x), tf.sin(math.pi * x) / (math.pi * x + 1e-12))
    window = 0.5 + 0.5 * tf.cos(math.pi * distance / tf.cast(half, tf.float32))
    weights = cutoff * sinc * tf.where(tf.abs(distance) < tf.cast(half, tf.float32), window, 0.0)
    length = tf.shape(wave)[0]
    inside = tf.logical_and(index >= 0, index < length)
    samples = tf.where(inside, tf.gather(wave, tf.clip_by_value(index, 0, tf.maximum(length - 1, 0))), 0.0)
    return tf.reduce_sum(samples * weights, axis=1)


def fix_length(waves: tf.Tensor, samples: int | tf.Tensor) -> tf.Tensor:
    """[N, T] -> [N, samples]: pads short clips on both sides, cuts long ones around their energy centre.

    The centre of energy (not the loudest window) keeps a short word in the middle of the cut, where
    the training clips have theirs.
    """
    waves = tf.convert_to_tensor(waves, tf.float32)
    length = tf.shape(waves)[1]
    missing = tf.maximum(samples - length, 0)
    waves = tf.pad(waves, [[0, 0], [missing // 2, missing - missing // 2]])
    length = tf.shape(waves)[1]
    energy = tf.square(waves)
    total = tf.reduce_sum(energy, axis=1)
    where = tf.range(length, dtype=tf.float32)[None, :]
    centre = tf.math.divide_no_nan(tf.reduce_sum(energy * where, axis=1), total)
    centre = tf.where(total > 0, centre, tf.cast(length, tf.float32) / 2.0)
    start = tf.cast(tf.round(centre - tf.cast(samples, tf.float32) / 2.0), tf.int32)
    start = tf.clip_by_value(start, 0, length - samples)
    index = start[:, None] + tf.range(samples)[None, :]
    return tf.gather(waves, index, batch_dims=1)


def to_model_rate(wave: tf.Tensor, rate: int | tf.Tensor, target_rate: int, clip_seconds: float) -> tf.Tensor:
    """A mono clip at `rate` -> float32 [clip samples] at `target_rate`, cut around its energy centre."""
    out_samples = int(round(target_rate * clip_seconds))
    if isinstance(rate, int):  # known while tracing (e.g. a TFDS feature): no branch in the graph
        if rate == target_rate:
            return tf.ensure_shape(fix_length(wave[None], out_samples)[0], [out_samples])
        return resample(fix_length(wave[None], math.ceil(clip_seconds * rate))[0], rate, target_rate, out_samples)
    # Cut at the input rate (a little wider, so the resampling filter sees both edges), then resample.
    in_samples = tf.cast(tf.math.ceil(clip_seconds * tf.cast(rate, tf.float32)), tf.int32)
    return tf.cond(
        tf.equal(rate, target_rate),
        lambda: tf.ensure_shape(fix_length(wave[None], out_samples)[0], [out_samples]),
        lambda: tf.ensure_shape(resample(fix_length(wave[None], in_samples)[0], rate, target_rate, out_samples),
                                [out_samples]))


def load_clip(data: tf.Tensor, target_rate: int, clip_seconds: float, max_seconds: float,
              input_name: str = "audio_wav_bytes") -> tf.Tensor:
    """Encoded WAV (any rate, any length up to max_seconds) -> float32 [clip_samples] at target_rate."""
    wave, rate = decode_wav(data, input_name)
    rate_ok = tf.debugging.Assert(
        tf.logical_and(rate >= MIN_RATE, rate <= MAX_RATE),
        [f"Unsupported sample rate in {input_name}: received", rate,
         f"Hz; the model runs at {target_rate} Hz and resamples from {MIN_RATE}..{MAX_RATE} Hz"])
    seconds = tf.cast(tf.shape(wave)[0], tf.float32) / tf.cast(tf.maximum(rate, 1), tf.float32)
    short_enough = tf.debugging.Assert(
        seconds <= max_seconds,
        [f"{input_name} is too long: received", seconds, f"seconds; the cap is {max_seconds} s"])
    with tf.control_dependencies([rate_ok, short_enough]):
        return to_model_rate(wave, rate, target_rate, clip_seconds)


def clips(wavs, config) -> tf.Tensor:
    """WAV bytes or paths -> the float32 [N, clip_samples] batch that predict_waveform and the model take."""
    return tf.stack([load_clip(tf.constant(read_bytes(w)), config.sample_rate, config.clip_seconds,
                               config.max_seconds) for w in wavs])


def encode_wav(wave: np.ndarray, sample_rate: int) -> bytes:
    """float32 mono waveform in [-1, 1] -> 16-bit PCM WAV bytes."""
    wave = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)
    return tf.audio.encode_wav(tf.constant(wave)[:, None], sample_rate).numpy()


@keras.saving.register_keras_serializable(package="speech_commands")
class LogMelSpectrogram(layers.Layer):
    """Waveforms [N, T] -> log mel-filterbank energies [N, frames, n_mels] (tf.signal, stock ops).

    Args:
        sample_rate: rate of the input waveforms in Hz.
        frame_length: STFT window in samples.
        frame_step: hop between frames in samples.
        n_mels: mel bands.
        fmin: lowest band edge in Hz.
        fmax: highest band edge in Hz (0: the Nyquist frequency).

    Example:
        >>> LogMelSpectrogram(16000, 400, 160, 40)(keras.ops.zeros((2, 16000))).shape  # (2, 98, 40)
    """

    def __init__(self, sample_rate, frame_length, frame_step, n_mels, fmin=20.0, fmax=0.0, **kwargs):
        super().__init__(**kwargs)
        if frame_length <= 0 or frame_step <= 0:
            raise ValueError(f"frame_length and frame_step must be positive. Received: "
                             f"frame_length={frame_length}, frame_step={frame_step}")
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self.fft_length = 1 << (frame_length - 1).bit_length()
        self.mel_matrix = tf.signal.linear_to_mel_weight_matrix(
            n_mels, self.fft_length // 2 + 1, sample_rate, fmin, fmax or sample_rate / 2.0)

    def call(self, waveforms):
        waveforms = tf.cast(waveforms, tf.float32)  # the FFT stays in float32 under mixed precision
        stft = tf.signal.stft(waveforms, self.frame_length, self.frame_step, self.fft_length,
                              window_fn=tf.signal.hann_window)
        power = tf.square(tf.abs(stft))
        mel = tf.tensordot(power, self.mel_matrix, axes=1)
        # The floor (-60 dB below a full-scale sine's band energy) keeps digital silence finite.
        return tf.math.log(mel + 1e-6)

    def compute_output_shape(self, input_shape):
        frames = None
        if input_shape[-1] is not None:
            frames = 1 + (input_shape[-1] - self.frame_length) // self.frame_step
        return (input_shape[0], frames, self.n_mels)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax}

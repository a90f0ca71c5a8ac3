"""Waveform -> log-mel spectrogram -> SpecAugment (training only) -> compact residual CNN -> keyword probabilities.

Input: float32 waveforms [N, clip_samples] at config.sample_rate in [-1, 1]. The spectrogram is
computed inside the model, so training, the exported endpoints and a user's own code all feed audio.
Everything before the classifier is the nested model "encoder" (published with `catalogue export
--hub`); a TF Hub audio-embedding module (`encoder=hub:<...>`) can take its place.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from apps.speech_commands.audio import LogMelSpectrogram
from core.hub import hub_layer
from core.layers import ConvBlock, ResidualBlock, classifier_head


@keras.saving.register_keras_serializable(package="speech_commands")
class SpecAugment(layers.Layer):
    """SpecAugment's time and frequency masks on [N, frames, bins] features, in training only.

    Masked cells take the example's mean value, so a mask looks like "nothing here" rather than
    like a loud or a silent band.

    Args:
        time_masks: masks over whole frames per example.
        time_mask_frames: longest time mask.
        freq_masks: masks over whole bins per example.
        freq_mask_bins: widest frequency mask.
        seed: random seed.
    """

    def __init__(self, time_masks=2, time_mask_frames=10, freq_masks=2, freq_mask_bins=6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.time_masks = time_masks
        self.time_mask_frames = time_mask_frames
        self.freq_masks = freq_masks
        self.freq_mask_bins = freq_mask_bins
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _masks(self, n, size, count, width):
        positions = tf.range(size)[None, None, :]
        widths = tf.cast(keras.random.uniform((n, count, 1), 0, width + 1, seed=self.seed_generator), tf.int32)
        room = tf.cast(size, tf.float32) - tf.cast(widths, tf.float32)
        starts = tf.cast(keras.random.uniform((n, count, 1), seed=self.seed_generator) * room, tf.int32)
        inside = tf.logical_and(positions >= starts, positions < starts + widths)
        return tf.reduce_any(inside, axis=1)  # [n, size]

    def call(self, features, training=None):
        if not training or (self.time_masks == 0 and self.freq_masks == 0):
            return features
        shape = tf.shape(features)
        n, frames, bins = shape[0], shape[1], shape[2]
        mask = tf.zeros_like(features, dtype=tf.bool)
        if self.time_masks:
            mask |= self._masks(n, frames, self.time_masks, self.time_mask_frames)[:, :, None]
        if self.freq_masks:
            mask |= self._masks(n, bins, self.freq_masks, self.freq_mask_bins)[:, None, :]
        mean = tf.reduce_mean(features, axis=[1, 2], keepdims=True)
        return tf.where(mask, mean, features)

    def get_config(self):
        return {**super().get_config(), "time_masks": self.time_masks, "time_mask_frames": self.time_mask_frames,
                "freq_masks": self.freq_masks, "freq_mask_bins": self.freq_mask_bins, "seed": self.seed}


def build_encoder(config) -> keras.Model:
    """Waveforms [N, clip_samples] -> a clip embedding [N, D]: the part other apps reuse ("encoder")."""
    waveform = keras.Input((config.clip_samples,), name="waveform")
    if config.encoder:
        module = hub_layer(config.encoder, name="hub_encoder")  # frozen: the classifier learns
        length = module.module_input.shape[-1] if module.module_input.shape.rank == 2 else None
        if length is not None and length != config.clip_samples:
            raise ValueError(f"The encoder module takes {length}-sample clips; the model cuts "
                             f"{config.clip_samples}. Received: encoder={config.encoder!r}, "
                             f"clip_seconds={config.clip_seconds}, sample_rate={config.sample_rate}")
        x = module(waveform)
        if len(x.shape) == 3:  # per-frame embeddings (YAMNet): their mean is the clip's
            x = layers.GlobalAveragePooling1D()(x)
        return keras.Model(waveform, x, name="encoder")
    frame = int(round(config.sample_rate * config.frame_ms / 1000.0))
    hop = int(round(config.sample_rate * config.hop_ms / 1000.0))
    x = LogMelSpectrogram(config.sample_rate, frame, hop, config.n_mels, name="log_mel")(waveform)
    if config.spec_augment:
        x = SpecAugment(config.time_masks, config.time_mask_frames, config.freq_masks, config.freq_mask_bins,
                        seed=config.seed, name="spec_augment")(x)
    x = layers.Reshape((-1, config.n_mels, 1))(x)
    # Per-band statistics learned from the data: no per-clip normalisation, which would blow the
    # noise floor of a silent clip up to speech level.
    x = layers.BatchNormalization(axis=2, momentum=0.9, name="band_norm")(x)
    x = ConvBlock(config.width, 3, strides=2)(x)
    for stage in range(config.depth):
        width = config.width * 2 ** stage
        x = ResidualBlock(width, strides=1 if stage == 0 else 2)(x)
    # Frequency stays a feature axis: which band a formant sits in is what tells words apart, and a
    # global average over frequency throws that away. Time is max-pooled, so the keyword may sit
    # anywhere in the clip.
    x = layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)
    x = layers.Dense(config.embed, activation="swish", name="frame_features")(x)
    x = layers.GlobalMaxPooling1D()(x)
    return keras.Model(waveform, x, name="encoder")


def build_model(config, num_classes: int) -> keras.Model:
    """Waveform batch -> class probabilities (float32 even under mixed precision)."""
    inputs = keras.Input((config.clip_samples,), name="waveform")
    outputs = classifier_head(build_encoder(config)(inputs), num_classes, config.dropout)
    return keras.Model(inputs, outputs, name="speech_commands")

"""A causal CTC speech recognizer, and the container that holds it beside the translation model.

    waveform [B, T] (T a multiple of step_samples) -> log-mel frames (left context of frame_length -
    frame_step zeros) -> LayerNorm per frame -> SpecAugment (training) -> `stack` frames per step
    -> conv_layers x causal Conv1D -> gru_layers x unidirectional GRU -> logits over ALPHABET + blank

Every layer looks only backwards, so the recognizer runs on chunks as well as on whole clips: `run`
takes the carried state (the last audio samples, each convolution's last input steps, each GRU's
state) and returns the new one. A clip cut into chunks of whole steps gives the same logits as the
whole clip; a test checks it. Per-frame normalization (no per-utterance statistics) keeps it so.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from apps.speech_commands.audio import LogMelSpectrogram
from apps.speech_commands.model import SpecAugment
from apps.spoken_translation.audio import BLANK, NUM_CLASSES
from apps.translation import Config as TranslationConfig
from apps.translation import model as translation_model


@keras.saving.register_keras_serializable(package="spoken_translation")
class Recognizer(keras.Model):
    """Causal log-mel -> conv -> GRU -> CTC logits, over whole clips (`call`) or chunks (`run`).

    Args:
        sample_rate, frame_length, frame_step, n_mels: the log-mel front end (samples, bands).
        stack: frames per model step.
        conv_layers, conv_channels, conv_kernel: the causal convolutions.
        gru_layers, gru_units: the unidirectional GRUs.
        dropout: between layers, in training.
        spec_augment: SpecAugment's (time_masks, time_mask_frames, freq_masks, freq_mask_bins).

    Example:
        >>> r = Recognizer(8000, 200, 80, 40, 2, 2, 64, 5, 1, 96, 0.1)
        >>> r(keras.ops.zeros((2, 1600))).shape  # (2, 10, 29): 10 steps of 160 samples
    """

    def __init__(self, sample_rate, frame_length, frame_step, n_mels, stack, conv_layers, conv_channels,
                 conv_kernel, gru_layers, gru_units, dropout, spec_augment=(2, 8, 2, 5), **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.n_mels = n_mels
        self.stack = stack
        self.conv_layers = conv_layers
        self.conv_channels = conv_channels
        self.conv_kernel = conv_kernel
        self.gru_layers = gru_layers
        self.gru_units = gru_units
        self.dropout = dropout
        self.spec_augment = tuple(spec_augment)
        self.spectrogram = LogMelSpectrogram(sample_rate, frame_length, frame_step, n_mels, name="log_mel")
        # Per frame: causal, and a change of gain (an offset in log-mel) is taken out.
        self.frame_norm = layers.LayerNormalization(epsilon=1e-3, name="frame_norm")
        self.masks = SpecAugment(*self.spec_augment, name="spec_augment")
        self.convs = [layers.Conv1D(conv_channels, conv_kernel, activation="gelu", name=f"conv_{i}")
                      for i in range(conv_layers)]
        self.conv_norms = [layers.LayerNormalization(epsilon=1e-3, name=f"conv_norm_{i}") for i in range(conv_layers)]
        # use_cudnn=False: a graph traced on a GPU would otherwise hold kernels a CPU server cannot run.
        self.grus = [layers.GRU(gru_units, return_sequences=True, return_state=True, use_cudnn=False, name=f"gru_{i}")
                     for i in range(gru_layers)]
        self.drop = layers.Dropout(dropout)
        self.classifier = layers.Dense(NUM_CLASSES, dtype="float32", name="ctc_logits")

    @property
    def step_samples(self) -> int:
        return self.frame_step * self.stack

    @property
    def audio_context(self) -> int:
        """Samples of the previous chunk the first STFT window of the next one reaches back to."""
        return self.frame_length - self.frame_step

    def state_sizes(self) -> list[int]:
        """Width of each part of the flat state: audio context, each conv's input steps, each GRU."""
        conv_inputs = [self.stack * self.n_mels] + [self.conv_channels] * (self.conv_layers - 1)
        return ([self.audio_context] + [(self.conv_kernel - 1) * c for c in conv_inputs]
                + [self.gru_units] * self.gru_layers)

    def initial_state(self, batch) -> tf.Tensor:
        return tf.zeros([batch, sum(self.state_sizes())], tf.float32)

    def run(self, waveform, state, training=None):
        """waveform [B, T] (T a multiple of step_samples), flat state [B, S] -> (logits [B, T / step_samples, C],
        new state)."""
        waveform = tf.cast(waveform, tf.float32)
        parts = tf.split(state, self.state_sizes(), axis=1)
        batch = tf.shape(waveform)[0]
        audio = tf.concat([parts[0], waveform], axis=1)
        new_state = [audio[:, tf.shape(audio)[1] - self.audio_context:]]
        x = self.masks(self.frame_norm(self.spectrogram(audio)), training=training)
        x = tf.reshape(x, [batch, tf.shape(x)[1] // self.stack, self.stack * self.n_mels])
        for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms)):
            channels = x.shape[-1]
            context = tf.reshape(parts[1 + i], [batch, self.conv_kernel - 1, channels])
            x = tf.concat([tf.cast(context, x.dtype), x], axis=1)
            new_state.append(tf.reshape(tf.cast(x[:, tf.shape(x)[1] - (self.conv_kernel - 1):], tf.float32),
                                        [batch, (self.conv_kernel - 1) * channels]))
            x = self.drop(norm(conv(x)), training=training)
        for i, gru in enumerate(self.grus):
            x, h = gru(x, initial_state=[tf.cast(parts[1 + self.conv_layers + i], x.dtype)], training=training)
            new_state.append(tf.cast(h, tf.float32))
            x = self.drop(x, training=training)
        return self.classifier(x), tf.concat(new_state, axis=1)

    def call(self, waveform, training=None):
        logits, _ = self.run(waveform, self.initial_state(tf.shape(waveform)[0]), training=training)
        return logits

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "n_mels": self.n_mels, "stack": self.stack,
                "conv_layers": self.conv_layers, "conv_channels": self.conv_channels,
                "conv_kernel": self.conv_kernel, "gru_layers": self.gru_layers, "gru_units": self.gru_units,
                "dropout": self.dropout, "spec_augment": list(self.spec_augment)}


def logit_lengths(samples, step_samples: int):
    """Valid model steps of clips of `samples` samples (padded to whole steps)."""
    return (tf.cast(samples, tf.int32) + step_samples - 1) // step_samples


@keras.saving.register_keras_serializable(package="spoken_translation")
class SpokenTranslator(keras.Model):
    """The recognizer and the translator in one model (one weights file); training fits the recognizer
    with CTC on {"waveform": [B, T], "samples": [B]} -> labels [B, L] (-1 = padding)."""

    def __init__(self, recognizer: Recognizer, translator, lm_order: int = 0, lm_rows: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.recognizer = recognizer
        self.translator = translator
        # The character language model the endpoints decode with (lm.CharNgram), saved with the weights.
        self.lm_order = lm_order
        self.lm_keys = self.add_weight(shape=(lm_rows,), dtype="int64", initializer="zeros", trainable=False,
                                       name="lm_keys")
        self.lm_log_probs = self.add_weight(shape=(lm_rows, NUM_CLASSES - 1), initializer="zeros",
                                            trainable=False, name="lm_log_probs")

    def set_language_model(self, lm) -> None:
        self.lm_keys.assign(lm.keys)
        self.lm_log_probs.assign(lm.log_probs)

    def call(self, inputs, training=None):
        return self.recognizer(inputs["waveform"], training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = tf.cast(y, tf.int32)
        label_length = tf.reduce_sum(tf.cast(labels >= 0, tf.int32), axis=1)
        logit_length = logit_lengths(x["samples"], self.recognizer.step_samples)
        # A clip too fast for its steps (a blank must separate repeated letters) has no CTC path: its
        # infinite loss would turn the gradients into NaN. It is scored on its first letter, weighted 0.
        padded = tf.maximum(labels, 0)
        repeats = tf.reduce_sum(tf.cast(tf.logical_and(padded[:, 1:] == padded[:, :-1], labels[:, 1:] >= 0),
                                        tf.int32), axis=1)
        feasible = tf.logical_and(logit_length >= label_length + repeats, label_length > 0)
        label_length = tf.where(feasible, label_length, 1)
        fused = not self.jit_compile
        if fused:
            # Sparse labels select TF's fused CTC kernel: on a CPU about 8 times faster than the dense form,
            # which XLA needs (the fused kernel does not compile).
            kept = tf.sequence_mask(label_length, tf.shape(labels)[1])
            padded = tf.SparseTensor(tf.where(kept), tf.boolean_mask(padded, kept),
                                     tf.shape(labels, out_type=tf.int64))
        loss = tf.nn.ctc_loss(padded, tf.cast(y_pred, tf.float32), None if fused else label_length,
                              logit_length, logits_time_major=False, blank_index=BLANK)
        # Per character, so long and short sentences weigh alike.
        per_char = loss / tf.cast(label_length, tf.float32)
        return tf.reduce_sum(tf.where(feasible, per_char, 0.0)) / tf.maximum(
            tf.reduce_sum(tf.cast(feasible, tf.float32)), 1.0)


def build_recognizer(config) -> Recognizer:
    model = Recognizer(config.sample_rate, config.frame_length, config.frame_step, config.n_mels, config.stack,
                       config.conv_layers, config.conv_channels, config.conv_kernel, config.gru_layers,
                       config.gru_units, config.dropout,
                       (config.time_masks, config.time_mask_frames, config.freq_masks, config.freq_mask_bins),
                       name="recognizer")
    model(tf.zeros([1, config.step_samples]))
    return model


def translation_config(config) -> TranslationConfig:
    """The translation app's settings for this app's translation model."""
    return TranslationConfig(vocab_size=config.translation_vocab_size, max_length=config.translation_max_length,
                             dim=config.translation_dim, num_heads=config.translation_heads,
                             ff_dim=config.translation_ff_dim, encoder_layers=config.translation_layers,
                             decoder_layers=config.translation_layers, dropout=config.translation_dropout,
                             decode=config.translation_decode, beam_size=config.translation_beam_size,
                             seed=config.seed)


def build_model(config, source_vocab_size: int, target_vocab_size: int, lm_rows: int = 1) -> SpokenTranslator:
    """Both models (and room for a language model of `lm_rows` contexts) for `config`, built (weights
    created) so they can load weights or be exported."""
    recognizer = build_recognizer(config)
    translator = translation_model.build_model(translation_config(config), source_vocab_size, target_vocab_size)
    model = SpokenTranslator(recognizer, translator, config.lm_order, lm_rows, name="spoken_translation")
    model({"waveform": tf.zeros([1, config.step_samples]), "samples": tf.ones([1], tf.int32)})
    return model

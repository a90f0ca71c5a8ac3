"""Text generation pipeline: stdlib docstrings / text files / TFDS -> character GPT or GRU -> nats/char
-> an endpoint that takes a prompt and returns the prompt with its sampled continuation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.text_generation import data, serving
from apps.text_generation import model as model_lib
from apps.text_generation.config import Config
from core.data import AUTOTUNE, Splits, batched
from core.distribute import is_chief
from core.pipeline import Pipeline as BasePipeline

LN2 = math.log(2.0)


def cross_entropy(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


@keras.saving.register_keras_serializable(package="text_generation")
class BitsPerChar(keras.metrics.Mean):
    """Mean next-character cross-entropy in bits (nats / ln 2)."""

    def __init__(self, name="bits_per_char", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(cross_entropy(y_true, y_pred) / LN2, sample_weight)


@keras.saving.register_keras_serializable(package="text_generation")
class Perplexity(keras.metrics.Mean):
    """exp(mean next-character cross-entropy in nats)."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(cross_entropy(y_true, y_pred), sample_weight)

    def result(self):
        return keras.ops.exp(super().result())


class SampleWriter(keras.callbacks.Callback):
    """Writes continuations of fixed prompts to workdir/samples/epoch_NNN.txt after every epoch.

    Args:
        pipeline: the pipeline whose live model generates (through the export's own graph).
        directory: where the sample files go.
    """

    def __init__(self, pipeline: Pipeline, directory: Path):
        super().__init__()
        self.pipeline = pipeline
        self.directory = Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        cfg = self.pipeline.config
        texts = self.pipeline.generate(list(cfg.sample_prompts), max_new_tokens=cfg.sample_tokens)
        loss = (logs or {}).get("val_loss")
        header = f"# epoch {epoch + 1}" + (f", val_loss {loss:.4f} nats/char" if loss is not None else "")
        body = "\n\n".join(f"--- prompt {p!r} (temperature {cfg.temperature}, seed {cfg.sample_seed})\n{t}"
                           for p, t in zip(cfg.sample_prompts, texts))
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"epoch_{epoch + 1:03d}.txt").write_text(f"{header}\n\n{body}\n", encoding="utf-8")


class Pipeline(BasePipeline):
    """Continues a prompt in the style of its training text, one character at a time.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/tg")
        >>> p.fit(); p.evaluate()["nats_per_char"]
        >>> p.predict(["The "])  # ["The ...continuation..."]
        >>> p.generate(["ROMEO:"], max_new_tokens=100, temperature=0.5, top_p=0.9, seed=3)
    """

    name = "text_generation"
    config_class = Config

    def __init__(self, config: Config | None = None, workdir=None):
        super().__init__(config, workdir)
        self._lookups = None
        self._ids: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------------------------------
    # Vocabulary: StringLookup layers built from state["vocabulary"], tracked by the export.

    @property
    def lookups(self) -> tuple[keras.layers.StringLookup, keras.layers.StringLookup]:
        """(characters -> ids, ids -> characters); id 0 is padding, id 1 is [UNK]."""
        if self._lookups is None:
            vocabulary = self.state.get("vocabulary")
            if not vocabulary:
                raise RuntimeError("No vocabulary yet: call datasets() or from_workdir() first.")
            make = lambda invert: keras.layers.StringLookup(  # noqa: E731
                vocabulary=vocabulary, mask_token="", oov_token="[UNK]", invert=invert)
            self._lookups = (make(False), make(True))
            # Build both now: the export tracks them, and an unbuilt layer cannot be tracked.
            self._lookups[0](tf.constant([" "]))
            self._lookups[1](tf.constant([0], tf.int64))
        return self._lookups

    @property
    def vocab_size(self) -> int:
        return len(self.state["vocabulary"]) + 2

    def trackables(self):
        return list(self.lookups)

    # ------------------------------------------------------------------------------------------
    # App hooks.

    def load_data(self) -> Splits:
        cfg = self.config
        train, val, test, info = data.load_texts(cfg.data, cfg.val_fraction, cfg.test_fraction, cfg.max_chars)
        self.state = {"vocabulary": data.build_vocabulary(train, cfg.max_vocab)}
        self._lookups = None
        lookup = self.lookups[0]
        self._ids = {name: data.encode(text, lookup) for name, text in
                     (("train", train), ("val", val), ("test", test))}
        stride = cfg.train_stride or cfg.seq_len
        info = {**info, "vocabulary_size": self.vocab_size,
                "unknown_chars": {k: int(np.sum(v == serving.UNKNOWN_ID)) for k, v in self._ids.items()}}
        # val: non-overlapping windows for the loss Keras reports each epoch (cheap); test: every
        # character scored once with its preceding context (scored_windows), as the metrics are.
        return Splits(data.jittered_windows(self._ids["train"], cfg.seq_len, stride, cfg.seed),
                      data.fixed_windows(self._ids["val"], cfg.seq_len), self.scored("test"), info)

    def scored(self, split: str) -> tf.data.Dataset:
        """Held-out `split` ("val" or "test") as scored windows (see data.scored_windows)."""
        cfg = self.config
        return data.scored_windows(self._ids[split], cfg.seq_len, cfg.eval_stride or max(cfg.seq_len // 2, 1))

    def make_model(self):
        return model_lib.build_model(self.config, self.vocab_size)

    def total_steps(self) -> int:
        cfg = self.config
        if cfg.steps_per_epoch:
            per_epoch = cfg.steps_per_epoch
        else:
            chars = len(self._ids.get("train", []))
            windows = max(chars - cfg.seq_len - 1, 0) // (cfg.train_stride or cfg.seq_len)
            per_epoch = max(windows // self.global_batch_size, 1)
        return max(per_epoch * cfg.epochs, 1)

    def compile_model(self, model):
        cfg = self.config
        warmup = min(cfg.warmup_steps, self.total_steps() // 2)
        schedule = self.cosine_learning_rate(self.total_steps(), warmup, cfg.min_lr_fraction)
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay,
                                           clipnorm=cfg.clipnorm or None)
        # Decay matrices only: norms, biases and embeddings keep their scale.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "embeddings"])
        self.compile_with(model, optimizer)

    def compile_with(self, model, optimizer):
        """Next-character cross-entropy and its bits/char and perplexity, with `optimizer`."""
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[BitsPerChar(), Perplexity()], jit_compile=self.config.jit_compile)

    def training_data(self, splits):
        b = self.global_batch_size
        shift = lambda w: (w[:, :-1], w[:, 1:])  # noqa: E731 - inputs and next-character targets
        count = int(splits.train.cardinality())
        train = (splits.train.shuffle(max(count, 1), seed=self.config.seed, reshuffle_each_iteration=True)
                 .batch(b, drop_remainder=True).map(shift, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))
        val = batched(splits.val, b, map_fn=shift)
        return train, val

    def extra_callbacks(self):
        return [SampleWriter(self, self.workdir / "samples")] if is_chief() else []

    def loss_on(self, windows: tf.data.Dataset) -> tuple[float, int]:
        """Mean next-character cross-entropy (nats) over the scored targets of (window, score_from)
        pairs (data.scored_windows), and how many targets were scored."""
        model = self.require_model()

        # No Python control flow to convert; autograph=False also avoids AutoGraph's closure-mismatch
        # warning when a second pipeline in the process defines this function again.
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)],
                     autograph=False)
        def summed(w, score_from):
            ce = tf.cast(cross_entropy(w[:, 1:], model(w[:, :-1], training=False)), tf.float64)
            scored = tf.range(tf.shape(ce)[1])[None, :] >= score_from[:, None]
            return tf.reduce_sum(tf.where(scored, ce, 0.0)), tf.reduce_sum(tf.cast(scored, tf.int32))

        total, count = 0.0, 0
        for w, score_from in batched(windows, 64, cache=False):
            s, c = summed(w, score_from)
            total, count = total + float(s), count + int(c)
        return total / max(count, 1), count

    def unigram_baseline(self) -> float:
        """Cross-entropy (nats/char) of the test text under the training text's character frequencies."""
        train, test = self._ids["train"], self._ids["test"]
        counts = np.bincount(train, minlength=self.vocab_size)[1:] + 1.0  # add-one; padding excluded
        log_p = np.log(counts / counts.sum())
        return float(-np.mean(log_p[test - 1]))

    def compute_metrics(self, test):
        nats, count = self.loss_on(test)
        val_nats, _ = self.loss_on(self.scored("val"))
        return {"nats_per_char": nats, "bits_per_char": nats / LN2, "perplexity": math.exp(nats),
                "val_nats_per_char": val_nats, "unigram_nats_per_char": self.unigram_baseline(),
                "test_chars": count}

    # ------------------------------------------------------------------------------------------
    # Serving.

    def generation_defaults(self) -> dict:
        cfg = self.config
        return {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_k": cfg.top_k,
                "top_p": cfg.top_p, "seed": cfg.sample_seed}

    def make_endpoints(self):
        lookup, inverse = self.lookups
        return serving.make_endpoints(self.require_model(), lookup, inverse, arch=self.config.arch,
                                      context_length=self.config.seq_len,
                                      max_generate=self.config.max_generate,
                                      defaults=self.generation_defaults())

    def encode_request(self, raw_inputs: Sequence[Any], **settings):
        """Prompts (str or UTF-8 bytes) and optional settings -> the endpoint's input tensors.

        Settings not given take the config's defaults; top_p is included only when given (it is an
        input of the `generate` endpoint, not of serving_default).
        """
        values = {**self.generation_defaults(), **{k: v for k, v in settings.items() if v is not None}}
        prompts = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in raw_inputs]
        n = len(prompts)
        request = {"prompt": tf.constant(prompts, tf.string, shape=[n])}
        dtypes = {"max_new_tokens": tf.int32, "temperature": tf.float32, "top_k": tf.int32, "seed": tf.int32}
        if "top_p" in settings and settings["top_p"] is not None:
            dtypes["top_p"] = tf.float32
        for key, dtype in dtypes.items():
            request[key] = tf.constant(np.broadcast_to(values[key], [n]), dtype)
        return request

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        return [t.decode("utf-8") for t in outputs["text"]]

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> list[str]:
        """prompt + continuation for each prompt, with any setting overriding the config's default."""
        if isinstance(prompts, (str, bytes)):
            prompts = [prompts]
        request = self.encode_request(list(prompts), max_new_tokens=max_new_tokens, temperature=temperature,
                                      top_k=top_k, seed=seed, top_p=top_p if top_p is not None else
                                      self.config.top_p)
        outputs = self.endpoints["generate"](**request)
        return self.decode_response({k: v.numpy() for k, v in outputs.items()})

    def sample_inputs(self, n: int = 4):
        """Fixed prompts: the first of config.sample_prompts, a non-ASCII one, the empty one, the rest."""
        first, *rest = self.config.sample_prompts
        prompts = [first, "Café – ", "", *rest]
        return [prompts[i % len(prompts)] for i in range(n)]

    def example_requests(self):
        prompts = self.sample_inputs(4)
        return {"serving_default": self.encode_request(prompts),
                "generate": self.encode_request(prompts, temperature=1.0, top_k=5, top_p=0.9, seed=7,
                                                max_new_tokens=16),
                "complete": {"prompt": tf.constant([p.encode() for p in prompts])}}

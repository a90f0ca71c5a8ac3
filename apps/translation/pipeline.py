"""Translation pipeline: sentence pairs -> in-graph subword tokens -> Transformer -> sacreBLEU -> text endpoint."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.translation import data, serving
from apps.translation import model as model_lib
from apps.translation.config import Config
from apps.translation.tokenizer import END, PAD, START, Tokenizer, decode_strings, learn_vocabulary, segment_counts
from core import hub
from core.data import check_utf8
from core.pipeline import Pipeline as BasePipeline
from core.schedules import WarmupInverseSqrt


def smoothed_loss(label_smoothing: float):
    """Token cross-entropy with label smoothing, averaged over the non-padding target tokens."""

    def loss(y_true, logits):
        y_true = tf.cast(y_true, tf.int32)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        true = -tf.gather(log_probs, y_true, batch_dims=2)
        uniform = -tf.reduce_mean(log_probs, axis=-1)
        per_token = (1.0 - label_smoothing) * true + label_smoothing * uniform
        mask = tf.cast(y_true != PAD, tf.float32)
        return tf.reduce_sum(per_token * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    return loss


def token_accuracy(y_true, logits):
    y_true = tf.cast(y_true, tf.int32)
    mask = tf.cast(y_true != PAD, tf.float32)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y_true), tf.float32)
    return tf.reduce_sum(hits * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def simplify(text: str) -> str:
    """Lowercase, no punctuation or symbols, single spaces: the keras.io example's own text form."""
    kept = "".join(ch for ch in text.lower() if ch.isspace() or unicodedata.category(ch)[0] in "LNM")
    return " ".join(kept.split())


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Standard sacreBLEU (cased, 13a, detokenized) and chrF, plus BLEU on simplified text."""
    import sacrebleu

    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu_simple": sacrebleu.corpus_bleu([simplify(h) for h in hypotheses],
                                             [[simplify(r) for r in references]]).score,
    }


class Pipeline(BasePipeline):
    """Translates sentences from `source_language` to `target_language`.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/tr")
        >>> p.fit(); p.evaluate()["bleu"]
        >>> p.predict(["March 5, 2021"])  # ["5 de marzo de 2021"]
    """

    name = "translation"
    config_class = Config

    def __init__(self, config=None, workdir=None):
        super().__init__(config, workdir)
        self._tokenizers: tuple[Tokenizer, Tokenizer] | None = None
        self.samples: list[dict[str, str]] = []

    # Data and tokenizers ---------------------------------------------------------------------

    def load_data(self):
        cfg = self.config
        splits = data.load(cfg.data, cfg.source_language, cfg.target_language, cfg.val_fraction,
                           cfg.test_fraction, cfg.seed, cfg.max_examples, cfg.held_out)
        if "source_vocab" not in self.state:
            self.state = self.learn_vocabularies(splits.train)
            self._tokenizers = None
        splits.info["vocab_sizes"] = {"source": len(self.state["source_vocab"]) + 4,
                                      "target": len(self.state["target_vocab"]) + 4}
        return splits

    def learn_vocabularies(self, train: tf.data.Dataset) -> dict[str, Any]:
        cfg = self.config
        sources, targets = [], []
        for s, t in train.as_numpy_iterator():
            sources.append(s.decode("utf-8"))
            targets.append(t.decode("utf-8"))
        options = dict(lowercase=cfg.lowercase, strip_punctuation=cfg.strip_punctuation)
        src_counts = segment_counts(sources, **options)
        tgt_counts = segment_counts(targets, **options)
        learn = lambda counts: learn_vocabulary(counts, cfg.vocab_size, cfg.tokenizer, cfg.min_frequency)  # noqa: E731
        if cfg.shared_vocab:
            vocab = learn(src_counts + tgt_counts)
            return {"source_vocab": vocab, "target_vocab": vocab}
        return {"source_vocab": learn(src_counts), "target_vocab": learn(tgt_counts)}

    @property
    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        if self._tokenizers is None:
            if "source_vocab" not in self.state:
                self.datasets()
            cfg = self.config
            options = dict(max_length=cfg.max_length, mode=cfg.tokenizer, lowercase=cfg.lowercase,
                           strip_punctuation=cfg.strip_punctuation)
            source = Tokenizer(self.state["source_vocab"], name="source", **options)
            target = source if cfg.shared_vocab else Tokenizer(self.state["target_vocab"], name="target", **options)
            self._tokenizers = (source, target)
        return self._tokenizers

    def trackables(self):
        source, target = self.tokenizers
        return source.trackables() + ([] if target is source else target.trackables())

    def encoders(self):
        cfg = self.config
        source, _ = self.tokenizers
        encoder = model_lib.SentenceEncoder(self.require_model(), name="sentence_encoder")
        encoder(tf.ones((1, 2), tf.int32))
        return {"encoder": hub.Encoder(
            encoder, tf.TensorSpec([None], tf.string),
            f"Sentence embedding: UTF-8 sentences [N] in {cfg.source_language!r} -> [N, {cfg.dim}] float32, "
            f"the mean of a {cfg.source_language}->{cfg.target_language} translator's encoder outputs over "
            "the sentence's tokens (tokenization inside the module).",
            preprocess=lambda text: source.tokenize(check_utf8(text, "inputs")),
            trackables=tuple(source.trackables()))}

    # Model and training -----------------------------------------------------------------------

    def make_model(self):
        source, target = self.tokenizers
        return model_lib.build_model(self.config, source.vocab_size, target.vocab_size)

    def steps_per_epoch_estimate(self) -> int:
        sizes = (self._splits.info.get("sizes") or {}) if self._splits is not None else {}
        return max(1, math.ceil(sizes.get("train", 10000) / self.global_batch_size))

    def compile_model(self, model):
        cfg = self.config
        if cfg.schedule not in ("inverse_sqrt", "cosine"):
            raise ValueError(f"Unknown schedule. Received: schedule={cfg.schedule!r}; valid: inverse_sqrt, cosine")
        if cfg.schedule == "cosine":
            decay_steps = cfg.decay_steps or max(
                1, cfg.epochs * (cfg.steps_per_epoch or self.steps_per_epoch_estimate()) - cfg.warmup_steps)
            schedule = self.cosine_learning_rate(cfg.warmup_steps + decay_steps, cfg.warmup_steps)
        else:
            schedule = WarmupInverseSqrt(self.learning_rate, cfg.warmup_steps)
        self.compile_with(model, keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9,
                                                       clipnorm=cfg.clipnorm or None))

    def compile_with(self, model, optimizer):
        """Label-smoothed cross-entropy over the target tokens and token accuracy, with `optimizer`."""
        model.compile(optimizer=optimizer, loss=smoothed_loss(self.config.label_smoothing),
                      metrics=[token_accuracy], jit_compile=self.config.jit_compile)

    def encoded(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """(source text, target text) -> (source ids, target input ids, target output ids), unbatched."""
        source, target = self.tokenizers
        length = self.config.max_length

        def tokenize(s, t):
            return source.tokenize_ragged(s), target.tokenize_ragged(t)

        def shift(s, t):
            target_in = tf.concat([[START], t], 0)[:length]
            target_out = tf.concat([t, [END]], 0)[:length]
            return s, target_in, target_out

        ds = ds.batch(1024).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        return ds.map(shift, num_parallel_calls=tf.data.AUTOTUNE)

    def batches(self, ds: tf.data.Dataset, shuffle: bool) -> tf.data.Dataset:
        """Batches of similar lengths (little padding), as ({"source", "target_in"}, target_out)."""
        ds = self.encoded(ds).filter(lambda s, ti, to: tf.size(s) > 0).cache()
        if shuffle:
            ds = ds.shuffle(20000, seed=self.config.seed, reshuffle_each_iteration=True)
        # Padding to the bucket's bound gives a handful of batch shapes, so the train step is not
        # retraced for every new pair of lengths.
        length = self.config.max_length
        bounds = [b for b in (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128) if b <= length] + [length + 1]
        ds = ds.bucket_by_sequence_length(
            lambda s, ti, to: tf.maximum(tf.size(s), tf.size(ti)), bucket_boundaries=bounds,
            bucket_batch_sizes=[self.global_batch_size] * (len(bounds) + 1), padded_shapes=([None], [None], [None]),
            pad_to_bucket_boundary=True)
        return ds.map(lambda s, ti, to: ({"source": s, "target_in": ti}, to)).prefetch(tf.data.AUTOTUNE)

    def training_data(self, splits):
        return self.batches(splits.train, shuffle=True), self.batches(splits.val, shuffle=False)

    # Evaluation -------------------------------------------------------------------------------

    def translate(self, texts: Sequence[str], decode: str | None = None) -> list[str]:
        """Translations of many texts through the endpoint graph, batched by length for speed."""
        endpoint = self.endpoints[f"translate_{decode}" if decode else "serving_default"]
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: list[str] = [""] * len(texts)
        size = self.config.eval_batch_size
        for start in range(0, len(texts), size):
            idx = order[start:start + size]
            result = endpoint(text=tf.constant([texts[i] for i in idx], tf.string))["translation"]
            for i, text in zip(idx, decode_strings(result.numpy())):
                out[i] = text
        return out

    def compute_metrics(self, test):
        cfg = self.config
        pairs = [(s.decode("utf-8"), t.decode("utf-8")) for s, t in test.as_numpy_iterator()]
        if cfg.eval_max_examples:
            pairs = pairs[:cfg.eval_max_examples]
        sources, references = [p[0] for p in pairs], [p[1] for p in pairs]
        greedy = self.translate(sources, "greedy")
        beam = self.translate(sources, "beam")
        metrics: dict[str, float] = {}
        for name, hypotheses in (("greedy", greedy), ("beam", beam), ("copy_source", sources)):
            for key, value in corpus_scores(hypotheses, references).items():
                metrics[f"{key}_{name}"] = value
        chosen = "beam" if cfg.decode == "beam" else "greedy"
        metrics.update(bleu=metrics[f"bleu_{chosen}"], chrf=metrics[f"chrf_{chosen}"],
                       bleu_simple=metrics[f"bleu_simple_{chosen}"], test_sentences=len(pairs))
        self.samples = [{"source": s, "reference": r, "beam": b, "greedy": g}
                        for s, r, b, g in list(zip(sources, references, beam, greedy))[:10]]
        lines = ["| source | reference | beam | greedy |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row.values()) + " |" for row in self.samples]
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "samples.md").write_text("\n".join(lines) + "\n")
        return metrics

    # Serving ----------------------------------------------------------------------------------

    def make_endpoints(self):
        cfg = self.config
        source, target = self.tokenizers
        return serving.make_endpoints(self.require_model(), source, target, cfg.decode, cfg.beam_size,
                                      cfg.length_penalty)

    def encode_request(self, raw_inputs: Sequence[Any]):
        texts = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in raw_inputs]
        return {"text": tf.constant(texts, tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        return decode_strings(outputs["translation"])

    def sample_inputs(self, n: int = 4):
        return [s.decode("utf-8") for s, _ in self.datasets().test.take(n).as_numpy_iterator()]

    def example_requests(self):
        texts = self.sample_inputs(3) + ["", "x" * 300, "zzqx unknownword " * 40]
        request = self.encode_request(texts)
        return {name: request for name in ("serving_default", "translate_greedy", "translate_beam")}

"""Image captioning pipeline: scenes / COCO / Flickr8k / CSV / TFDS -> CNN + Transformer decoder
-> corpus BLEU-4 and CIDEr-D -> image_bytes in, caption out (greedy and beam search in the graph)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from apps.captioning import data, serving, text
from apps.captioning import model as model_lib
from apps.captioning.config import Config
from core import backbones, hub
from core.data import batched, read_bytes
from core.pipeline import Pipeline as BasePipeline
from core.plots import captioned_images_png

BASELINE_CANDIDATES = 50
COMPACT_SIZE = 48  # image_size=0 without a backbone


def corpus_bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 (sacrebleu, 13a tokenization) against every reference of each image, in 0..1."""
    import sacrebleu

    streams = [[refs[j] if j < len(refs) else None for refs in references]
               for j in range(max(len(r) for r in references))]
    return sacrebleu.corpus_bleu(hypotheses, streams).score / 100.0


def cider_d(hypotheses: list[str], references: list[list[str]]) -> float:
    """CIDEr-D (pycocoevalcap's Cider: n-grams 1-4, sigma 6, clipped, x10) on standardized text.

    pycocoevalcap's PTB tokenizer needs Java, so captions are fed already standardized (lower case,
    no punctuation) instead; document frequencies come from the references of the evaluated split.
    """
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score({i: refs for i, refs in enumerate(references)},
                                     {i: [hyp] for i, hyp in enumerate(hypotheses)})
    return float(score)


class Pipeline(BasePipeline):
    """Writes one English sentence about a photo.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/cap")
        >>> p.fit(); p.evaluate()["bleu4"]
        >>> p.predict([open("scene.png", "rb").read()])  # ["two red circles left of a cat"]
        >>> p.predict_beam([...])  # [{"captions": [...], "scores": [...]}]
    """

    name = "captioning"
    config_class = Config
    def __init__(self, config: Config | None = None, workdir=None):
        super().__init__(config, workdir)
        cfg = self.config
        self.config = cfg.replace(image_size=backbones.image_size(cfg.backbone, cfg.image_size, COMPACT_SIZE))
        self._vectorizer = None

    def load_data(self):
        cfg = self.config
        splits, train_captions = data.load(cfg.data, cfg.image_size, cfg.val_fraction, cfg.test_fraction,
                                           cfg.seed, cfg.num_scenes)
        if not self.state:  # a reloaded pipeline keeps the vocabulary its weights were trained with
            standardized = text.standardize_list(train_captions)
            longest = max(len(c.split()) for c in standardized)
            self.state = {
                "vocabulary": text.learn_vocabulary(standardized, cfg.vocabulary_size),
                # Decoder positions: [start] plus the words; [end] is the target of the last one.
                "max_length": min(cfg.max_length, longest + 1),
                # Candidates for the image-blind baseline (see compute_metrics).
                "frequent_captions": [c for c, _ in Counter(standardized).most_common(BASELINE_CANDIDATES)],
            }
        return splits

    @property
    def vectorizer(self) -> keras.layers.TextVectorization:
        if self._vectorizer is None:
            if not self.state:
                self.datasets()
            self._vectorizer = text.make_vectorizer(self.state["vocabulary"], self.state["max_length"])
        return self._vectorizer

    def make_model(self):
        return model_lib.build_model(self.config, len(self.state["vocabulary"]), self.state["max_length"])

    def compile_model(self, model):
        model.compile(
            optimizer=keras.optimizers.AdamW(self.learning_rate, weight_decay=1e-4, clipnorm=1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=self.config.jit_compile)

    def training_data(self, splits):
        vectorizer = self.vectorizer

        def examples(random_caption: bool):
            def to_example(images, captions):
                # Each step sees one reference per image: a random one in training, the first in validation.
                if random_caption:
                    count = tf.reduce_sum(tf.cast(captions != "", tf.float32), axis=1)
                    index = tf.cast(tf.random.uniform(tf.shape(count)) * count, tf.int32)
                else:
                    index = tf.zeros(tf.shape(captions)[:1], tf.int32)
                ids = tf.cast(vectorizer(text.with_markers(tf.gather(captions, index, batch_dims=1))), tf.int32)
                targets = ids[:, 1:]
                # The masked loss: padding after [end] carries no weight.
                weights = tf.cast(targets != 0, tf.float32)
                return {"images": tf.cast(images, tf.float32), "tokens": ids[:, :-1]}, targets, weights
            return to_example

        b = self.global_batch_size
        train = batched(splits.train, b, shuffle=True, seed=self.config.seed, map_fn=examples(True))
        val = batched(splits.val, b, map_fn=examples(False))
        return train, val

    def caption_decoder(self) -> serving.Decoder:
        model = self.require_model()
        return serving.Decoder(model.get_layer("encoder"), model.get_layer("decoder"),
                               self.state["vocabulary"], self.state["max_length"])

    def compute_metrics(self, test):
        cfg = self.config
        decoder = self.caption_decoder()
        # One trace each for every batch size (the last batch is smaller).
        spec = [tf.TensorSpec([None, cfg.image_size, cfg.image_size, 3], tf.float32)]

        @tf.function(input_signature=spec)
        def greedy(images):
            return decoder.detokenize(decoder.greedy(images)[0])

        @tf.function(input_signature=spec)
        def beam(images):
            return decoder.detokenize(decoder.beam(images, cfg.beam_width)[0][:, 0])

        hypotheses, beam_hypotheses, references, report_images = [], [], [], []
        for images, captions in batched(test, 128, cache=False):
            floats = tf.cast(images, tf.float32)
            hypotheses += [c.decode("utf-8") for c in greedy(floats).numpy()]
            beam_hypotheses += [c.decode("utf-8") for c in beam(floats).numpy()]
            standardized = text.standardize(captions).numpy()
            references += [[c.decode("utf-8") for c in row if c] for row in standardized]
            report_images += list(images.numpy()[:max(0, cfg.report_images - len(report_images))])
        # What a model that ignores the image can get: one caption for every image, the best (on these
        # very references, so an optimistic baseline) of the most frequent training captions.
        baseline = max(([c] * len(references) for c in self.state["frequent_captions"]),
                       key=lambda constant: corpus_bleu4(constant, references))
        metrics = {
            "bleu4": corpus_bleu4(hypotheses, references),
            "bleu4_beam": corpus_bleu4(beam_hypotheses, references),
            "cider_d": cider_d(hypotheses, references),
            "exact_match": float(np.mean([h in refs for h, refs in zip(hypotheses, references)])),
            "baseline_bleu4": corpus_bleu4(baseline, references),
            "baseline_cider_d": cider_d(baseline, references),
        }
        self._write_report(report_images, hypotheses, beam_hypotheses, references, metrics)
        return metrics

    def _write_report(self, images, hypotheses, beam_hypotheses, references, metrics):
        self.workdir.mkdir(parents=True, exist_ok=True)
        texts = [f"greedy: {h}\nbeam: {b}\nreference: {refs[0]}"
                 for h, b, refs in zip(hypotheses, beam_hypotheses, references)]
        captioned_images_png(images, texts, self.workdir / "captions.png",
                             title=f"{self.name}: test BLEU-4 {metrics['bleu4']:.3f}, "
                                   f"CIDEr-D {metrics['cider_d']:.3f}")
        with (self.workdir / "test_captions.jsonl").open("w") as f:
            for h, b, refs in zip(hypotheses, beam_hypotheses, references):
                f.write(json.dumps({"greedy": h, "beam": b, "references": refs}) + "\n")

    def encoders(self):
        encoder = self.require_model().get_layer("encoder")
        size = self.config.image_size
        tokens, dim = encoder.output.shape[1:]
        return {"encoder": hub.Encoder(
            encoder, tf.TensorSpec([None, size, size, 3], tf.float32),
            f"Image tokens: float32 RGB images [N, {size}, {size}, 3] in [0, 1] -> [N, {tokens}, {dim}] "
            f"features (one per image region, positions added), the encoder of a captioning model.",
            preprocess=lambda images: images * 255.0)}

    def make_endpoints(self):
        return serving.make_endpoints(self.caption_decoder(), self.vectorizer, self.config.image_size,
                                      self.config.beam_width)

    def trackables(self):
        return [self.vectorizer]  # its lookup table serves serving_score's in-graph tokenization

    def encode_request(self, raw_inputs: Sequence[Any]):
        return {"image_bytes": tf.constant([read_bytes(x) for x in raw_inputs], tf.string)}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        return [c.decode("utf-8") for c in outputs["caption"]]

    def predict_beam(self, raw_inputs: Sequence[Any]) -> list[dict]:
        """Beam search: the beam_width best captions of each input with their log-probabilities."""
        outputs = self.endpoints["serving_beam"](**self.encode_request(list(raw_inputs)))
        return [{"captions": [c.decode("utf-8") for c in captions], "scores": [float(s) for s in scores]}
                for captions, scores in zip(outputs["captions"].numpy(), outputs["scores"].numpy())]

    def score(self, raw_inputs: Sequence[Any], captions: Sequence[str]) -> list[float]:
        """Log-probability the model gives each caption for its image (serving_score)."""
        request = {**self.encode_request(list(raw_inputs)), "caption": tf.constant(list(captions))}
        return [float(s) for s in self.endpoints["serving_score"](**request)["log_probability"].numpy()]

    def test_examples(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The first `n` test (uint8 image, padded reference captions) pairs."""
        return list(self.datasets().test.take(n).as_numpy_iterator())

    def sample_inputs(self, n: int = 4):
        return [tf.io.encode_png(image).numpy() for image, _ in self.test_examples(n)]

    def example_requests(self):
        request = self.encode_request(self.sample_inputs(4))
        first_references = [captions[0].decode("utf-8") for _, captions in self.test_examples(4)]
        return {"serving_default": request, "serving_beam": request,
                "serving_score": {**request, "caption": tf.constant(first_references)}}

"""Translation's bench: Multi30k English -> German in 30 minutes, against the keras.io example's recipe.

Ours decays along a cosine that ends with the 30 minutes (`budget_ends_schedule`), so it settles on any
machine's speed. The anchor is the keras.io English-Spanish example's model and recipe, trained on the
same pairs under the same budget and scored on the same held-out pairs.
"""

from __future__ import annotations

import keras

from apps.translation.pipeline import Pipeline
from core.bench import BenchSpec

# The keras.io example's shape: 1 encoder + 1 decoder block, dim 256, FF 2048, 8 heads, 15k-word
# vocabularies, 20 tokens, greedy decoding, lowercased text without punctuation. Its warmup and clipping
# are those KerasIoRecipe trains with, so that the anchor's config.json records them.
KERAS_IO_SHAPE = {"tokenizer": "word", "lowercase": True, "strip_punctuation": True, "vocab_size": 15000,
                  "max_length": 20, "dim": 256, "ff_dim": 2048, "num_heads": 8, "encoder_layers": 1,
                  "decoder_layers": 1, "dropout": 0.2, "tie_output": False, "label_smoothing": 0.0,
                  "learning_rate": 1e-3, "decode": "greedy", "min_frequency": 1, "batch_size": 64,
                  "warmup_steps": 0, "clipnorm": 0.0}


class KerasIoRecipe(Pipeline):
    """The keras.io example's training: RMSprop at a constant learning rate; no warmup, decay or clipping."""

    def compile_model(self, model):
        self.compile_with(model, keras.optimizers.RMSprop(self.learning_rate))


ANCHOR_METRICS = ("bleu", "chrf", "bleu_simple", "bleu_greedy", "bleu_simple_greedy")


def keras_io_anchor(pipeline: Pipeline) -> dict[str, float]:
    """Trains the keras.io recipe on the same pairs and budget; its scores on the same test pairs."""
    anchor = KerasIoRecipe(pipeline.config.replace(**KERAS_IO_SHAPE), pipeline.workdir / "anchor")
    fit = anchor.fit()
    metrics = anchor.evaluate()
    return {**{k: metrics[k] for k in ANCHOR_METRICS}, "train_seconds": fit["train_seconds"],
            "epochs_run": fit["epochs_run"]}


def translations(pipeline: Pipeline, n: int = 5) -> list[dict[str, str]]:
    """Held-out sources, references and translations for the demo and bench reports."""
    if not pipeline.samples:  # not evaluated yet: translate test sources
        sources = pipeline.sample_inputs(n)
        return [{"source": s, "translation": t} for s, t in zip(sources, pipeline.predict(sources))]
    return [{"source": r["source"], "reference": r["reference"], "translation": r[pipeline.config.decode]}
            for r in pipeline.samples[:n]]


BENCH = BenchSpec(
    overrides={"source_language": "en", "target_language": "de", "held_out": 1000, "time_budget_s": 1800,
               "epochs": 100, "early_stopping_patience": 4, "eval_batch_size": 64, "batch_size": 96,
               "learning_rate": 1e-3, "warmup_steps": 800, "vocab_size": 8000, "max_length": 64, "dim": 256,
               "num_heads": 4, "ff_dim": 1024, "encoder_layers": 3, "decoder_layers": 3, "dropout": 0.1,
               "schedule": "cosine", "budget_ends_schedule": True},
    dataset="multi30k",
    source="Multi30k task 1 (TFDS has no Multi30k), https://github.com/multi30k/dataset: data/task1/raw/"
           "{train,val}.{en,de}.gz, gunzipped into multi30k/ as train.en, train.de, val.en, val.de",
    bars=(("bleu", ">=", 33.0), ("bleu_simple", ">", "anchor_bleu_simple"), ("bleu", ">", "anchor_bleu")),
    # Beam search over all 1,014 test pairs takes minutes on a CPU: quick mode scores the first 200.
    quick={"eval_max_examples": 200},
    anchor=keras_io_anchor,
    examples=translations,
)

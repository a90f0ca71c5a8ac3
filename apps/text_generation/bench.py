"""Text generation's bench: tiny_shakespeare, our recipe against the TF tutorial's on the tutorial's GRU.

Ours and the anchor share the tutorial's model and batch shape, so they run at one speed and take the
same steps in the same budget: only the training recipe differs. Ours counts its cosine to step 1,000
(5 x 200) instead of ending it with the budget, and the anchor trains for the whole budget.
"""

from __future__ import annotations

from typing import Any

import keras

from apps.text_generation.pipeline import Pipeline
from core.bench import BenchSpec

# The TF text-generation tutorial's model and batch shape.
TUTORIAL_SHAPE: dict[str, Any] = {"arch": "gru", "embedding_dim": 256, "rnn_units": 1024, "rnn_layers": 1,
                                  "seq_len": 100, "batch_size": 64, "dropout": 0.0}


class TutorialRecipe(Pipeline):
    """The tutorial's training recipe: plain Adam at a constant learning rate; no warmup, decay or clipping."""

    def compile_model(self, model):
        self.compile_with(model, keras.optimizers.Adam(self.learning_rate))


def tutorial_anchor(pipeline: Pipeline) -> dict[str, float]:
    """Trains the tutorial's GRU recipe on the same text for the whole time budget; its held-out losses."""
    # The recipe's settings too, though compile_model sets them, so that its config.json records them.
    config = pipeline.config.replace(**TUTORIAL_SHAPE, learning_rate=1e-3, weight_decay=0.0, warmup_steps=0,
                                     clipnorm=0.0, epochs=max(pipeline.config.epochs, 1000))
    anchor = TutorialRecipe(config, pipeline.workdir / "anchor")
    fit = anchor.fit()
    test, _ = anchor.loss_on(anchor.datasets().test)
    val, _ = anchor.loss_on(anchor.scored("val"))
    return {"gru_nats_per_char": test, "gru_val_nats_per_char": val, "gru_train_seconds": fit["train_seconds"],
            "gru_steps": float(anchor.model.optimizer.iterations.numpy())}


def continuations(pipeline: Pipeline, n: int = 5) -> list[dict[str, str]]:
    """Continuations of fixed prompts for the demo and bench reports (line breaks shown as ↵)."""
    cfg = pipeline.config
    prompts = pipeline.sample_inputs(n)
    show = lambda t: t.replace("\n", "↵")  # one table row per sample
    column = f"continuation (temperature {cfg.temperature}, seed {cfg.sample_seed})"
    return [{"prompt": show(p), column: show(t[len(p):])} for p, t in zip(prompts, pipeline.predict(prompts))]


BENCH = BenchSpec(
    overrides={**TUTORIAL_SHAPE, "learning_rate": 2e-3, "warmup_steps": 100, "epochs": 5, "steps_per_epoch": 200,
               "budget_ends_schedule": False, "time_budget_s": 900, "early_stopping_patience": 100,
               "sample_prompts": ("ROMEO:", "First Citizen:\n"), "max_new_tokens": 100, "verbose": 2},
    dataset="tiny_shakespeare/input.txt",
    source="TFDS `tiny_shakespeare`, or char-rnn's "
           "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt: "
           "its first 1,003,788 characters (`head -c 1003788 input.txt`) as tiny_shakespeare/input.txt",
    bars=(("nats_per_char", "<=", 1.55), ("nats_per_char", "<", "anchor_gru_nats_per_char")),
    anchor=tutorial_anchor,
    examples=continuations,
)

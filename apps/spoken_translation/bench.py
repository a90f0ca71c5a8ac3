"""Spoken translation's bench: the Asterisk telephone prompts (one real speaker, 8 kHz), split by prompt.

Ours trains on the real recordings of the training prompts (with eSpeak renders of the same sentences
for breadth); the anchor is the same model and budget trained on eSpeak renders of the training
prompts only (synthetic speech alone). Both are scored on the real recordings of held-out prompts
(sentences never heard in training, the speaker heard). The translation model learns the training
prompts' French and Spanish texts and Multi30k's English-French pairs; the spoken translation's chrF
is compared with translating the gold transcripts by the same model.
"""

from __future__ import annotations

from apps.spoken_translation import data
from apps.spoken_translation.pipeline import Pipeline
from core.bench import BenchSpec

ANCHOR_METRICS = ("wer", "cer")


class SyntheticOnlyPipeline(Pipeline):
    """Trains (and validates) on eSpeak renders of the training prompts alone; tested on the real recordings."""

    def speech_splits(self):
        return data.load(self.config, real_training_audio=False)


def synthetic_only_anchor(pipeline: Pipeline) -> dict[str, float]:
    """The same model, steps and budget trained on eSpeak renders of the training prompts alone."""
    cfg = pipeline.config
    anchor = SyntheticOnlyPipeline(cfg.replace(synthetic_voices=max(cfg.synthetic_voices, 4)),
                                   pipeline.workdir / "anchor")
    fit = anchor.fit()
    metrics = anchor.evaluate()
    return {**{k: metrics[k] for k in ANCHOR_METRICS}, "train_seconds": fit["train_seconds"],
            "epochs_run": fit["epochs_run"]}


def clip_examples(pipeline: Pipeline, n: int = 5) -> list[dict]:
    """Held-out clips: reference, transcript and translations, for the demo and bench reports."""
    if not pipeline.samples:
        pipeline.evaluate()
    return [{k: v for k, v in row.items()} for row in pipeline.samples[:n]]


BENCH = BenchSpec(
    overrides={"epochs": 400, "steps_per_epoch": 50, "batch_size": 16, "learning_rate": 2e-3, "time_budget_s": 1200,
               "budget_ends_schedule": True, "early_stopping_patience": 400, "conv_channels": 128,
               "gru_layers": 1, "gru_units": 256, "synthetic_voices": 2, "max_train_seconds": 8.0,
               "text_pairs": "multi30k",
               "max_text_pairs": 5000, "translation_epochs": 100, "translation_budget_s": 300,
               "translation_vocab_size": 2000, "translation_dim": 128, "translation_ff_dim": 256,
               "translation_warmup_steps": 300, "translation_batch_size": 64, "verbose": 2},
    dataset="asterisk_prompts",
    source="Asterisk core sound prompts (English, Allison Smith), Debian packages asterisk-core-sounds-en-wav and "
           "asterisk-core-sounds-{en,es,fr}: en_wav/*.wav and transcripts.tsv (id, wav, en, es, fr)",
    bars=(("wer", "<=", 0.20), ("wer", "<", "anchor_wer"), ("chrf_fr", ">=", "chrf_fr_floor"),
          ("chrf_es", ">=", "chrf_es_floor")),
    quick={"translation_budget_s": 30, "max_text_pairs": 1000},
    anchor=synthetic_only_anchor,
    examples=clip_examples,
)

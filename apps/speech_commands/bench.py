"""Speech commands' bench: the Free Spoken Digit Dataset's real 8 kHz recordings, resampled in the graph.

Test = file indices below `test_index_below` (10) of every speaker and digit; no silence class is
added, so the accuracy is on spoken digits only.
"""

from __future__ import annotations

import numpy as np

from apps.speech_commands import audio
from core.bench import BenchSpec


def bare_model(pipeline, raw_inputs):
    """serving_default's neural work on the decoded, resampled clips; decoding is the endpoint's overhead."""
    model = pipeline.require_model()
    return (lambda x: model(x, training=False)), audio.clips(raw_inputs, pipeline.config)


def clip_examples(pipeline, n: int = 5) -> list[dict]:
    """Test clips with their true and predicted keywords, for the demo and bench reports."""
    names = pipeline.state["class_names"]
    pairs = [(x.numpy(), names[int(y)]) for x, y in pipeline.datasets().test.take(n)]
    answers = pipeline.predict([audio.encode_wav(x, pipeline.config.sample_rate) for x, _ in pairs])
    return [{"test clip": f"#{i} ({np.sqrt(np.mean(np.square(x))):.3f} RMS)", "true": truth,
             "predicted": a["label"], "top scores": ", ".join(f"{k} {v}" for k, v in a["scores"].items())}
            for i, ((x, truth), a) in enumerate(zip(pairs, answers))]


BENCH = BenchSpec(
    overrides={"epochs": 20, "batch_size": 64, "width": 24, "depth": 3, "learning_rate": 3e-3,
               "add_silence": False, "early_stopping_patience": 8},
    dataset="fsdd",
    source="the Free Spoken Digit Dataset (TFDS `spoken_digit` holds the same recordings), "
           "https://github.com/Jakobovski/free-spoken-digit-dataset: its recordings/ folder "
           "(<digit>_<speaker>_<index>.wav) as fsdd/recordings/",
    bars=(("accuracy", ">=", 0.98),),
    bare_model=bare_model,
    examples=clip_examples,
)

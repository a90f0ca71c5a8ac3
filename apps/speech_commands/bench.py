"""Speech commands' bench: the Free Spoken Digit Dataset's real 8 kHz recordings, resampled in the graph.

Test = file indices below `test_index_below` (10) of every speaker and digit; no silence class is
added, so the accuracy is on spoken digits only. The transfer recipe publishes the encoder trained on
the embedded eSpeak keywords as a TF Hub module and trains FSDD digits from 3 clips per digit and
speaker with it frozen, against the compact CNN from scratch under the same steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apps.speech_commands import audio
from core.bench import BenchSpec
from core.data import data_root


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


FSDD_SOURCE = ("the Free Spoken Digit Dataset (TFDS `spoken_digit` holds the same recordings), "
               "https://github.com/Jakobovski/free-spoken-digit-dataset: its recordings/ folder "
               "(<digit>_<speaker>_<index>.wav) as fsdd/recordings/")
SOURCE_NARROWBAND = 0.5  # share of the source's eSpeak clips band-limited to 3-4 kHz, as FSDD's 8 kHz files are
SHOTS = (10, 11, 12)  # file indices of each digit and speaker the few-shot arms train on
VAL_SHOTS = (13,)  # picks the best epoch in both arms; the held-out test files are indices 5..9
# The same steps in both arms; patience beyond the run: no early end.
FEW_SHOT_TRAINING = {"epochs": 30, "steps_per_epoch": 6, "batch_size": 32, "learning_rate": 3e-3,
                     "add_silence": False, "early_stopping_patience": 100, "verbose": 2}


def few_shot_folder(recordings: Path, out_dir: Path, test_index_below: int = 10) -> Path:
    """train/ (SHOTS), val/ (VAL_SHOTS) and test/ (indices below test_index_below) links to FSDD files."""
    for path in sorted(recordings.glob("*.wav")):
        index = int(path.stem.split("_")[-1])
        split = "train" if index in SHOTS else "val" if index in VAL_SHOTS else \
            "test" if index < test_index_below else None
        if split:
            (out_dir / split).mkdir(parents=True, exist_ok=True)
            os.symlink(path.resolve(), out_dir / split / path.name)
    return out_dir


def transfer_recipe(out_dir: Path) -> dict[str, float]:
    """Embedded eSpeak keywords -> published encoder -> FSDD digits from 3 clips per digit and speaker,
    encoder frozen vs the compact CNN from scratch (same steps), scored on the held-out FSDD files.

    Equivalent commands:
        catalogue train speech_commands --workdir runs/espeak --set narrowband=0.5  # demo preset
        catalogue export speech_commands --workdir runs/espeak --hub         # -> saved_models/hub/...
        catalogue train speech_commands --data few_shot_fsdd --set add_silence=false epochs=30 \
            steps_per_epoch=6 batch_size=32 early_stopping_patience=100 \
            encoder=hub:saved_models/hub/speech_commands/encoder
        (from scratch: the same without encoder=)
    where few_shot_fsdd/ holds train/ (file indices 10-12), val/ (13) and test/ (5-9) of FSDD.
    """
    from apps.speech_commands import Config, Pipeline

    out_dir = Path(out_dir)
    recordings = data_root() / "fsdd" / "recordings"
    if not recordings.exists():
        raise FileNotFoundError(f"The transfer recipe reads {recordings}, which is absent. Get it from {FSDD_SOURCE}.")
    # FSDD is 8 kHz audio: an encoder that met band-limited clips transfers better (recipe validation files).
    source = Pipeline(Config.preset("demo", narrowband=SOURCE_NARROWBAND, verbose=2), out_dir / "espeak")
    source.fit()
    source_metrics = source.evaluate()
    module = source.export_hub(out_dir / "models")["encoder"]
    folder = few_shot_folder(recordings, out_dir / "few_shot_fsdd")
    target = Config(data=str(folder), **FEW_SHOT_TRAINING)
    scratch = Pipeline(target.replace(width=24, depth=3), out_dir / "fsdd_scratch")
    scratch.fit()
    transfer = Pipeline(target.replace(encoder=f"hub:{module}"), out_dir / "fsdd_transfer")
    transfer.fit()
    scratch_metrics, transfer_metrics = scratch.evaluate(), transfer.evaluate()
    return {"accuracy": transfer_metrics["accuracy"], "scratch_accuracy": scratch_metrics["accuracy"],
            "chance": transfer_metrics["chance"], "test_files": transfer_metrics["examples"],
            "source_accuracy": source_metrics["accuracy"]}


BENCH = BenchSpec(
    overrides={"epochs": 20, "batch_size": 64, "width": 24, "depth": 3, "learning_rate": 3e-3,
               "add_silence": False, "early_stopping_patience": 8},
    dataset="fsdd",
    source="the Free Spoken Digit Dataset (TFDS `spoken_digit` holds the same recordings), "
           "https://github.com/Jakobovski/free-spoken-digit-dataset: its recordings/ folder "
           "(<digit>_<speaker>_<index>.wav) as fsdd/recordings/",
    bars=(("accuracy", ">=", 0.98), ("transfer_accuracy", ">", "transfer_scratch_accuracy")),
    recipes={"transfer": transfer_recipe},
    bare_model=bare_model,
    examples=clip_examples,
)

"""The spectrogram of a clip with the recognizer's CTC alignment: which character each step emits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from apps.spoken_translation.audio import ALPHABET, BLANK
from core.plots import _pyplot, _save


def alignment_png(mel: np.ndarray, logits: np.ndarray, config, reference: str, path: str | Path) -> Path:
    """Log-mel frames [F, n_mels] over the class posteriors [steps, classes], emitted characters marked."""
    plt = _pyplot()
    step_seconds = config.step_samples / config.sample_rate
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    best = probs.argmax(-1)
    previous = np.concatenate([[BLANK], best[:-1]])
    emitted = [(t, ALPHABET[c]) for t, c in enumerate(best) if c != BLANK and c != previous[t]]
    transcript = "".join(ch for _, ch in emitted).strip()
    duration = len(best) * step_seconds
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 2.2 * duration), 6), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2]})
    axes[0].imshow(mel.T, origin="lower", aspect="auto", cmap="magma", extent=[0, duration, 0, mel.shape[1]])
    axes[0].set_ylabel("mel band")
    for t, ch in emitted:
        x = (t + 0.5) * step_seconds
        axes[0].axvline(x, color="cyan", lw=0.6, alpha=0.7)
        axes[0].text(x, mel.shape[1] * 0.92, "_" if ch == " " else ch, color="white", ha="center", fontsize=9,
                     fontweight="bold")
    axes[0].set_title(f"reference: {reference!r}\ntranscript: {transcript!r}", fontsize=9, loc="left")
    labels = ["␣" if c == " " else c for c in ALPHABET] + ["blank"]
    axes[1].imshow(probs.T, origin="lower", aspect="auto", cmap="Greys", extent=[0, duration, -0.5, len(labels) - 0.5],
                   vmin=0, vmax=1)
    axes[1].set_yticks(range(len(labels)), labels, fontsize=5)
    axes[1].set_xlabel("seconds")
    axes[1].set_ylabel("CTC class posterior")
    fig.tight_layout()
    return _save(fig, path, dpi=110)

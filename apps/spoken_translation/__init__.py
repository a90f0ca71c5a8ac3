"""Spoken translation: English speech -> its transcript (CTC speech recognition) -> French or Spanish."""

from apps.spoken_translation.config import Config
from apps.spoken_translation.pipeline import Pipeline

__all__ = ["Config", "Pipeline"]

"""Game agent: learns Connect Four by self-play (AlphaZero-style); a move history in, the move to play out."""

from apps.game_agent.config import Config
from apps.game_agent.pipeline import Pipeline

__all__ = ["Config", "Pipeline"]

"""Image generation: a class name and a seed in, a new image (PNG) out, from a class-conditional GAN."""

from apps.image_generation.config import Config
from apps.image_generation.pipeline import Pipeline

__all__ = ["Config", "Pipeline"]

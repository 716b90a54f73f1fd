"""Models, registered by name: `build(data_set, **params) -> BlockModel`."""
from . import gpt2, linear, resnet18, small_cnn  # noqa: F401  (registers)
from .base import BlockModel

__all__ = ["BlockModel"]

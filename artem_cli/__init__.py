"""artem: paint photos in the style of a painting by neural style transfer (Gatys et al.) on VGG16.

The Python API: ``Settings``, ``stylize`` (arrays) and ``stylize_file`` (files), ``ArtemError``.
"""
from .api import Result, Settings, stylize, stylize_file
from .errors import ArtemError

__all__ = ["ArtemError", "Result", "Settings", "stylize", "stylize_file"]

"""The visualiser (matplotlib, headless-safe)."""

from attribkit.viz.heatmap import heatmap_2d, save_heatmap

__all__ = ["heatmap_2d", "save_heatmap"]

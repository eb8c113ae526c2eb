"""Feature visualisation: what a network's layers and units respond to.

- :func:`feature_maps` -- a layer's activations for some images (forward hook),
  with the top-k most active channels; :meth:`FeatureMaps.plot` draws them.
- :func:`maximize_activation` -- images that maximise channels, class logits
  or (DeepDream) a layer's norm, all targets optimised as one batch
  (Erhan et al. 2009; Simonyan et al. 2014; Mordvintsev et al. 2015; Olah et al. 2017).
- :func:`filter_grid` -- first-layer filters as pictures, or the maximised
  channels of a layer, as a grid.

Importing this package imports torch (``import attribkit`` does not).
"""

from attribkit.features.maps import FeatureMaps, feature_maps
from attribkit.features.maximize import Visualization, maximize_activation
from attribkit.features.filters import filter_grid
from attribkit.features.plots import plot_feature_maps, plot_visualization

__all__ = [
    "FeatureMaps", "Visualization", "feature_maps", "filter_grid", "maximize_activation",
    "plot_feature_maps", "plot_visualization",
]

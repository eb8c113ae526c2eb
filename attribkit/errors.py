"""The exceptions attribkit raises.

Every error derives from :class:`AttribkitError`, and also from the builtin
exception a Python user would expect (``ValueError`` for a bad argument,
``LookupError`` for an unknown name, ``ImportError`` for a missing
dependency), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class AttribkitError(Exception):
    """Base class of every error raised by attribkit."""


class SpecError(AttribkitError, ValueError):
    """A :class:`~attribkit.registry.MethodSpec` is malformed."""


class DuplicateMethodError(AttribkitError, ValueError):
    """Two plugins registered the same method name or alias."""


class UnknownMethodError(AttribkitError, LookupError):
    """No registered method has the requested name or alias."""


class InvalidOptionError(AttribkitError, ValueError):
    """An option is not accepted by the method, or has the wrong type."""


class InputError(AttribkitError, ValueError):
    """The inputs have the wrong type, shape, dtype or device."""


class TargetError(AttribkitError, ValueError):
    """A target is out of range, has the wrong length, or the wrong form."""


class LayerError(AttribkitError, LookupError):
    """A layer is not in the model, or no suitable layer could be found."""


class GradientModeError(AttribkitError, RuntimeError):
    """Gradients cannot be computed in the current autograd mode."""


class PluginError(AttribkitError, RuntimeError):
    """A plugin failed to load or register (raised in strict mode)."""


class MissingDependencyError(AttribkitError, ImportError):
    """An optional dependency needed by a method or feature is not installed."""


class ModelLoadError(AttribkitError, ValueError):
    """A model spec or its weights cannot be used: an unknown model, weights that are
    neither a known name nor a file, a file that is not a plain state dict, or a state
    dict that does not fit the model."""


class DownloadError(AttribkitError, ConnectionError):
    """Pretrained weights could not be downloaded (no network, or the server refused)."""


class StoreError(AttribkitError, ValueError):
    """A path is not an attribkit store, holds the results of another run or other data,
    is damaged, or is being written by another process (also
    ``attribkit.datasets.store.StoreError``)."""


class StoreWriteError(AttribkitError, OSError):
    """Writing a dataset run's store failed (a full disk, a file too large); the batches
    stored before it are kept, and the same call resumes from them."""


class MetricWarning(UserWarning):
    """A metric's score is undefined for some images (an empty mask, a constant map, a
    prediction that changes under every perturbation, ...): those scores are NaN, and
    the warning names the metric, the images and why (``docs/metrics.md``)."""


class AttributionWarning(UserWarning):
    """A result is computed but says nothing: a map that is zero everywhere (the target
    score does not depend on the input or layer there, e.g. a detector with no detection
    matching the box, or a CAM whose ReLU clipped every position). The warning names the
    method and the images."""

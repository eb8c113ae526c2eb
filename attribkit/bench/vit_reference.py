"""The reference vision transformer: a small ViT trained on the synthetic data, cached.

The ``shapes-vit`` benchmark task (:mod:`attribkit.bench.tasks.shapes_vit`;
``attribkit bench --task shapes-vit``) explains it, so that the attention
family (and the token CAMs) are scored with ground truth, as the reference CNN
(:mod:`attribkit.bench.reference`) scores the others. It is timm's
``VisionTransformer`` with small dimensions (a class token, a few blocks, small
patches, randomly initialised; a convolutional stem as its patch embedding, see
:func:`conv_stem_embed`: a plain patchify ViT of this size stays near chance on the
task in the time budget), so attribkit reads its token layout from the model like
any timm ViT. Training reuses the reference CNN's reproducible
recipe (:func:`attribkit.bench.training.fit_classifier`: seeded, deterministic,
one thread) and the same cache folder
(``$ATTRIBKIT_CACHE``), keyed by a hash of everything that determines the weights
(the config, :data:`CACHE_VERSION` and timm's version, whose initialisation the
weights start from).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from attribkit.bench.training import Recipe, cached_model, config_key, fit_classifier
from attribkit.bench.synthetic import make_dataset

CACHE_VERSION = 1  # bump whenever the architecture or training changes


@dataclasses.dataclass(frozen=True)
class ViTTrainConfig(Recipe):
    """Everything that determines the trained ViT's weights (and so the cache key): the
    shared :class:`~attribkit.bench.training.Recipe` (more images and epochs, a lower
    rate) and the ViT's sizes.

    The defaults reach a test accuracy of 0.951 after 80 s of training on one CPU
    thread (plus about 10 s to draw the scenes); tests pass a tiny config.
    """

    n_train: int = 6000
    epochs: int = 12
    lr: float = 2e-3
    classes: int = 6
    size: int = 32
    patch: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    stem: bool = True

    def key(self) -> str:
        """A hash of the config, :data:`CACHE_VERSION` and timm's version."""
        import timm

        return config_key(self, CACHE_VERSION, timm=timm.__version__)


def conv_stem_embed() -> type:
    """A timm ``PatchEmbed`` whose projection is a convolutional stem (Xiao et al. 2021,
    Early Convolutions Help Transformers See Better, NeurIPS, arXiv:2106.14881): one
    stride-2 ``3x3`` convolution, BatchNorm and GELU per halving of the patch side,
    then a ``1x1`` convolution to the embedding width. The token grid, ``patch_size``
    and ``grid_size`` are those of the plain patch embedding (what attribkit reads)."""
    from timm.layers import PatchEmbed

    class ConvStemPatchEmbed(PatchEmbed):
        """timm's ``PatchEmbed`` with a convolutional stem as its projection."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            side = self.patch_size[0]
            if side != self.patch_size[1] or side & (side - 1):
                raise ValueError(f"a convolutional stem needs a square power-of-two patch, got {self.patch_size}")
            cin, layers, width = self.proj.in_channels, [], max(8, self.proj.out_channels // 4)
            while side > 1:
                layers += [nn.Conv2d(cin, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.GELU()]
                cin, width, side = width, width * 2, side // 2
            self.proj = nn.Sequential(*layers, nn.Conv2d(cin, self.proj.out_channels, 1))

    return ConvStemPatchEmbed


def build_vit(config: ViTTrainConfig = ViTTrainConfig()) -> nn.Module:
    """A randomly initialised timm ``VisionTransformer`` of ``config``'s size (class
    token, classification from the class token, no dropout; GELU, no ReLU), with
    :func:`conv_stem_embed` as patch embedding when ``config.stem``, in eval mode."""
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=config.size, patch_size=config.patch, embed_dim=config.dim,
                             depth=config.depth, num_heads=config.heads, mlp_ratio=config.mlp_ratio,
                             num_classes=config.classes,
                             embed_layer=conv_stem_embed() if config.stem else PatchEmbed).eval()


def fit_vit(config: ViTTrainConfig = ViTTrainConfig(), *,
            log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train the ViT from scratch (no cache) by :func:`~attribkit.bench.training.fit_classifier`;
    returns it with its record (config, training seconds, test accuracy, threads). The
    scenes are drawn from ``config.seed`` as :func:`attribkit.bench.reference.fit` draws them."""
    data = make_dataset(config.n_train, size=config.size, classes=config.classes, seed=config.seed)
    test = make_dataset(config.n_test, size=config.size, classes=config.classes, seed=config.seed + 10_000)
    model, record = fit_classifier(lambda: build_vit(config), data, test, config, log=log)
    return model, {"model": "synthetic-vit", **record}


def vit_reference_model(config: ViTTrainConfig = ViTTrainConfig(), *,
                        log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The trained reference ViT (from the cache when present, else :func:`fit_vit`,
    then cached) and its record (config, test accuracy, training seconds, cache path)."""
    return cached_model(f"reference-vit-{config.key()}", lambda: build_vit(config),
                        lambda: fit_vit(config, log=log))

"""Embedding targets: cosine similarity to a reference vector (``Similarity``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import TargetError
from attribkit.targets.base import Target, describe, find_tensor, row_index

EMBEDDING_KEYS = ("image_embeds", "text_embeds", "embeds", "embeddings", "pooler_output")
_SIMILARITY_FITS = ("Similarity reads (B, D) embeddings: a tensor, a Hugging Face output with "
                    "image_embeds / text_embeds / pooler_output, or a tuple whose first element is "
                    "one (CLIP: explain the image tower, attribkit.targets.clip.image_tower)")


def embeddings(output: Any) -> torch.Tensor:
    """The ``(B, D)`` embeddings of a raw model output."""
    found = find_tensor(output, EMBEDDING_KEYS, what="(B, D) embeddings", fits=_SIMILARITY_FITS)
    if found.ndim != 2:
        fits = {4: " (B, classes, H, W) segmentation logits fit Region(cls)",
                3: " (B, tokens, D) hidden states are no embedding yet: explain the module that "
                   "pools and projects them (a CLIP image tower: attribkit.targets.clip.image_tower)"}
        raise TargetError(f"Similarity reads (B, D) embeddings; the model returned "
                          f"{describe(found)}.{fits.get(found.ndim, '')}")
    return found


class Similarity(Target):
    """Cosine similarity of the model's embedding to a reference:
    ``S_i = <e_i, r_i> / (||e_i|| ||r_i||)`` (image retrieval; CLIP image–text, with
    ``r`` the text embedding; pytorch-grad-cam's ``SimilarityToConceptTarget``).

    ``embedding``: ``(D,)`` for all images or ``(B, D)`` one per image. The model's output
    is read as a ``(B, D)`` tensor, a Hugging Face output's ``image_embeds`` /
    ``text_embeds`` / ``pooler_output``, or a tuple's first element; for CLIP explain the
    image tower (:func:`attribkit.targets.clip.image_tower`).
    """

    def __init__(self, embedding: Any) -> None:
        e = torch.as_tensor(embedding).detach()
        if e.ndim not in (1, 2) or not e.is_floating_point() or e.shape[-1] == 0:
            raise TargetError(f"Similarity's embedding must be a float (D,) or (B, D) vector, got a "
                              f"{tuple(e.shape)} {e.dtype} tensor")
        if not bool(torch.isfinite(e).all()) or bool((e.reshape(-1, e.shape[-1]).norm(dim=1) == 0).any()):
            raise TargetError("Similarity's embedding must be finite and not zero")
        self.embedding = e.cpu()

    def __repr__(self) -> str:
        return f"Similarity(embedding of shape {tuple(self.embedding.shape)})"

    def bind(self, batch: int) -> Similarity:
        e = self.embedding
        if e.ndim == 1:
            e = e.expand(batch, len(e))
        elif len(e) != batch:
            raise TargetError(f"Similarity got {len(e)} embeddings for a batch of {batch} images")
        bound = Similarity.__new__(Similarity)
        bound.embedding, bound.bound = e, True
        return bound

    def take(self, rows: torch.Tensor) -> Similarity:
        taken = Similarity.__new__(Similarity)
        taken.embedding, taken.bound = self.embedding[rows.cpu()], True
        return taken

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        found = embeddings(output)
        if found.shape[1] != self.embedding.shape[1]:
            raise TargetError(f"the model's embeddings have {found.shape[1]} dimensions, the "
                              f"reference {self.embedding.shape[1]}")
        rows = row_index(images, len(found), found.device)
        ref = self.embedding.to(found.device, found.dtype)[rows]
        return self.check_rows(F.cosine_similarity(found, ref, dim=1), len(found))

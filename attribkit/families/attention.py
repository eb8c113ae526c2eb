"""Built-in plugin: the attention family (vision transformers and language models).

Methods that read a transformer's attention probabilities for the call, without
editing the model (the fused attention is computed explicitly while the call runs);
kernels in :mod:`attribkit.torch.attention`. Each returns a ``(B, 1, gh, gw)`` map
over the patch grid (``result.upsampled()`` resizes it to the input). On text
(:mod:`attribkit.text.attention`) the same methods read the row of the ``[CLS]`` token
(bidirectional encoders) or of the predicting position (causal LMs) over the tokens.
Formulas: ``docs/transformers.md``.
"""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import family_specs

KERNELS = "attribkit.torch.attention"
TEXT = "attribkit.text.attention"
# read from the model when None (attribkit.torch.layout.token_layout); given, they override it
TOKENS = {"prefix_tokens": None, "grid": None}


_attention = family_specs("attention", KERNELS, output="layer", sign="non-negative")


SPECS = (
    _attention(
        "raw_attention", needs=("module", "attention"),
        options={"head_fusion": "mean", **TOKENS},
        text=f"{TEXT}:raw_attention", text_options={"head_fusion": "mean", "row": "auto"},
        reference="the last block's attention weights, as visualised by Dosovitskiy et al. 2021, "
                  "An Image is Worth 16x16 Words, ICLR, arXiv:2010.11929",
        description="last block's class-token attention over the patches, heads averaged"),
    _attention(
        "attention_rollout", aliases=("rollout",), needs=("module", "attention"),
        options={"head_fusion": "mean", "discard_ratio": 0.0, **TOKENS},
        text=f"{TEXT}:attention_rollout", text_options={"head_fusion": "mean", "row": "auto"},
        reference="Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers, ACL, "
                  "arXiv:2005.00928",
        description="product of the blocks' head-fused attention plus identity, class-token row"),
    _attention(
        "generic_attention", aliases=("chefer2021", "chefer"), needs=("autograd", "module", "attention"),
        options=TOKENS, text=f"{TEXT}:generic_attention", text_options={"row": "auto"},
        reference="Chefer, Gur & Wolf 2021, Generic Attention-model Explainability for "
                  "Interpreting Bi-Modal and Encoder-Decoder Transformers, ICCV, arXiv:2103.15679",
        description="relevance accumulated from gradient-weighted positive attention"),
)


@hookimpl
def register_methods(register):
    """Register the attention family (kernels in :mod:`attribkit.torch.attention`)."""
    for spec in SPECS:
        register(spec)

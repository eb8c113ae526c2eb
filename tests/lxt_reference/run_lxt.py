"""LXT 2.1's relevance on a torchvision VisionTransformer, in its own process.

    python tests/lxt_reference/run_lxt.py JOBS.pt RESULTS.pt

LXT patches classes globally (``torch.nn.LayerNorm.forward``, ``torch.nn.GELU.forward``,
``torch.nn.MultiheadAttention.forward``), so it never runs inside the test process.
``JOBS.pt`` holds a list of jobs (see ``tests/lxt_reference/__init__.py``), each a dict with
``kind`` ("torchvision_vit"), ``config`` (VisionTransformer keyword arguments),
``state_dict``, ``x`` (B, C, H, W), ``target`` (B,) class ids and ``variant``
("cp_lrp" or "attnlrp"). ``RESULTS.pt`` gets one dict per job:

- ``relevance``: (B, C, H, W), pixels x gradient of the summed target logits with LXT's
  rules in place, as LXT's ``examples/vit_torch.py`` computes it (without the example's
  final sum over channels and without its optional Zennit gamma rules, so linear layers and
  the patch convolution are LRP-0: plain gradient x input);
- ``token_relevance``: (B, 1 + patches), the same at the encoder's input (class token and
  patch embeddings, before the position embedding is added), summed over the hidden size;
- ``logits``: (B, classes), the patched model's output (LXT's forward passes are the model's).

Variants (several jobs of either run in one process): ``cp_lrp`` is LXT's shipped map
``lxt.efficient.models.vit_torch.cp_LRP`` unchanged (query and key detached in every ``MultiheadAttention``: attention weights are
constants). LXT 2.1 ships no AttnLRP map for torchvision's ViT (its ``MultiheadAttention``
is one fused call); ``attnlrp`` is that map with the attention patch swapped, per job, by LXT's own
AttnLRP attention rule, the one ``lxt.efficient.patches.wrap_attention_forward`` applies
to the Hugging Face models: ``divide_gradient`` by 4 on query and key and by 2 on value
(the uniform rule on ``Q Kᵀ`` and ``A V``), the softmax's plain gradient being its Taylor rule.
"""

from __future__ import annotations

import sys
import torch


def stub_transformers_pruning() -> None:
    """``lxt.efficient`` imports its BERT copy, which imports two helpers that transformers 5
    removed; stub them (in this process only) so that the import succeeds. The stubs are never
    called: the ViT patches do not touch BERT."""
    import transformers.pytorch_utils as pytorch_utils

    def removed(*args, **kwargs):
        raise RuntimeError("removed in transformers 5; stubbed for LXT's import only")

    for name in ("find_pruneable_heads_and_indices", "prune_linear_layer"):
        if not hasattr(pytorch_utils, name):
            setattr(pytorch_utils, name, removed)


def attnlrp_attention_forward(self, query, key, value, *args, **kwargs):
    """``nn.MultiheadAttention.forward`` with LXT's AttnLRP attention rule on its inputs (the
    in-projections are linear, so scaling the gradient before them equals scaling it at q, k, v)."""
    from lxt.efficient.rules import divide_gradient

    query, key, value = divide_gradient(query, 4), divide_gradient(key, 4), divide_gradient(value, 2)
    return self.original_forward(query, key, value, *args, **kwargs)


def patch() -> None:
    """Apply LXT's shipped torchvision ViT map (CP-LRP); fail loudly if any patch is not applied."""
    stub_transformers_pruning()
    from lxt.efficient import monkey_patch
    from lxt.efficient.models.vit_torch import cp_LRP
    from lxt.efficient.patches import (cp_multi_head_attention_forward, layer_norm_forward,
                                       non_linear_forward)
    from torchvision.models import vision_transformer

    monkey_patch(vision_transformer, cp_LRP)
    applied = (torch.nn.LayerNorm.forward is layer_norm_forward
               and torch.nn.GELU.forward is non_linear_forward
               and torch.nn.MultiheadAttention.forward is cp_multi_head_attention_forward)
    if not applied:
        raise RuntimeError("LXT's torchvision ViT patches were not applied")


def select_attention(variant: str) -> None:
    """Install ``variant``'s attention rule on the patched ``MultiheadAttention`` (LayerNorm and
    GELU are the same in both variants)."""
    from lxt.efficient.patches import cp_multi_head_attention_forward

    rules = {"cp_lrp": cp_multi_head_attention_forward, "attnlrp": attnlrp_attention_forward}
    if variant not in rules:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(rules)}")
    torch.nn.MultiheadAttention.forward = rules[variant]


def relevance(job: dict) -> dict:
    """Run one job on the (already patched) classes."""
    from torchvision.models.vision_transformer import VisionTransformer

    select_attention(job["variant"])
    if job["kind"] != "torchvision_vit":
        raise ValueError(f"unknown model kind {job['kind']!r}; this script runs 'torchvision_vit'")
    x = job["x"]
    model = VisionTransformer(**job["config"]).to(x.dtype)
    model.load_state_dict(job["state_dict"])
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    tokens = []

    def keep_tokens(module, args):
        args[0].retain_grad()
        tokens.append(args[0])

    hook = model.encoder.register_forward_pre_hook(keep_tokens)
    x = x.clone().requires_grad_(True)
    logits = model(x)
    hook.remove()
    logits.gather(1, job["target"].view(-1, 1)).sum().backward()
    return {"relevance": (x * x.grad).detach(),
            "token_relevance": (tokens[0] * tokens[0].grad).sum(-1).detach(),
            "logits": logits.detach()}


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    jobs = torch.load(argv[0], weights_only=True)
    patch()
    torch.save([relevance(job) for job in jobs], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

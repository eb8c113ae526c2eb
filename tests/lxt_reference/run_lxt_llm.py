"""LXT 2.1's relevance on a tiny Hugging Face causal LM, in its own process and in an
environment with ``transformers<5`` (``make lxt-venv``): LXT's LLaMA / GPT-2 patches replace
transformers' attention-function registry with a plain dict, which transformers 5 no longer
reads.

    .venv-lxt/bin/python tests/lxt_reference/run_lxt_llm.py JOBS.pt RESULTS.pt

Each job (see ``tests/lxt_reference/__init__.py``): ``kind`` ("llama" or "gpt2"),
``config`` (keyword arguments of ``LlamaConfig`` / ``GPT2Config``; attention "eager" unless
given), ``state_dict`` (its dtype is the model's), ``x`` the token ids (B, T), ``target``
(B,) token ids and ``variant`` ("attnlrp" or "cp_lrp": LXT's shipped maps ``attnLRP`` and
``cp_LRP`` of ``lxt.efficient.models.llama`` / ``.gpt2``; all jobs of one process share the
variant, since the patches are global). As in LXT's examples, the explained quantity is the
target token's logit at the last position, and the relevance is input embeddings x gradient
(``inputs_embeds``; GPT-2's position embeddings are added after it). Results: ``relevance``
(B, T) summed over the hidden size, ``embedding_relevance`` (B, T, D), ``logits`` (B, T, V).
"""

from __future__ import annotations

import sys

import torch


def patch(kinds: set[str], variant: str) -> None:
    """Apply LXT's ``variant`` map for each model kind; fail loudly on an unknown name."""
    from lxt.efficient import monkey_patch
    from lxt.efficient.models import gpt2, llama

    if variant not in ("attnlrp", "cp_lrp"):
        raise ValueError(f"unknown variant {variant!r}; expected 'attnlrp' or 'cp_lrp'")
    for kind in sorted(kinds):
        if kind not in ("llama", "gpt2"):
            raise ValueError(f"unknown model kind {kind!r}; expected 'llama' or 'gpt2'")
        lxt_models = {"llama": llama, "gpt2": gpt2}[kind]
        module = {"llama": llama.modeling_llama, "gpt2": gpt2.modeling_gpt2}[kind]
        monkey_patch(module, lxt_models.attnLRP if variant == "attnlrp" else lxt_models.cp_LRP)


def build(kind: str, config: dict, state_dict: dict) -> torch.nn.Module:
    """The model of ``kind`` with ``config`` and ``state_dict``, in eval mode, frozen."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM),
                                 "gpt2": (GPT2Config, GPT2LMHeadModel)}[kind]
    config = config_class(**{"attn_implementation": "eager", **config})
    dtype = next(iter(state_dict.values())).dtype
    model = model_class(config).to(dtype)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [name for name in missing if name != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ValueError(f"state_dict does not fit {model_class.__name__}: missing {missing}, "
                         f"unexpected {unexpected}")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def relevance(job: dict) -> dict:
    """Run one job on the (already patched) classes."""
    model = build(job["kind"], job["config"], job["state_dict"])
    embeds = model.get_input_embeddings()(job["x"]).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, use_cache=False).logits
    logits[:, -1, :].gather(1, job["target"].view(-1, 1)).sum().backward()
    embedding_relevance = (embeds * embeds.grad).detach()
    return {"relevance": embedding_relevance.sum(-1), "embedding_relevance": embedding_relevance,
            "logits": logits.detach()}


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    jobs = torch.load(argv[0], weights_only=True)
    variants = {job["variant"] for job in jobs}
    if len(variants) != 1:
        raise ValueError(f"one variant per process (LXT patches globally), got {sorted(variants)}")
    patch({job["kind"] for job in jobs}, variants.pop())
    torch.save([relevance(job) for job in jobs], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

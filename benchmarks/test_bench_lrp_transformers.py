"""LRP through transformers (issue 26) against one forward + backward of the fused
model to its input, in the same run (target: <= 1.5x):

* ``explain(vit, x, targets, method="lrp", composite=c)`` for ``c`` in ``attnlrp``,
  ``cp_lrp`` on timm ``deit_tiny_patch16_224`` (random weights, fused attention as
  shipped), a batch of ``ATTRIBKIT_BENCH_LRP_VIT_BATCH`` (default 8) images at
  ``ATTRIBKIT_BENCH_SIZE`` (default 224) px; the floor is
  :func:`benchmarks.shared.forward_backward` of the target logits;
* the same on a LLaMA-like causal LM (:func:`attribkit.text.testing.tiny_llama`, 4
  blocks of width 256, 4 heads, sdpa attention), ``ATTRIBKIT_BENCH_LRP_TEXT_BATCH``
  (default 8) texts of ``ATTRIBKIT_BENCH_LRP_TEXT_TOKENS`` (default 128) tokens with
  an attention mask, the target an int (the next token's id); the floor is one forward
  + backward of that token's logit at the last position to the input embeddings.
  Skipped, with the reason, if ``lrp`` does not run on the model.

``pytest benchmarks/test_bench_lrp_transformers.py --benchmark-only``; the summary
table (``benchmarks/conftest.py``) gives the ratios (its header shows the other
suites' batch; this one uses its own). Measured on 1 CPU thread (``OMP_NUM_THREADS=1``),
the defaults, the three calls interleaved round-robin (``-k interleaved -s``,
``ATTRIBKIT_BENCH_ROUNDS`` 5 and 7, medians): with
the rules in gradient form (the fused attention kept), deit_tiny
attnlrp 1.12x, cp_lrp 1.12-1.18x; LLaMA-like attnlrp 1.25x, cp_lrp 0.95-1.10x (before:
1.58-1.71x, 1.28-1.32x; 1.61-1.82x, 1.05-1.19x).
"""

import os

import pytest
import torch

import attribkit as ak
from benchmarks.conftest import bench_device, bench_size
from benchmarks.shared import forward_backward, interleaved

timm = pytest.importorskip("timm")

MODEL = "deit_tiny_patch16_224"
COMPOSITES = ("attnlrp", "cp_lrp")


@pytest.fixture(scope="module")
def vit():
    gen = torch.Generator().manual_seed(0)
    device = bench_device()
    torch.manual_seed(0)
    model = timm.create_model(MODEL, pretrained=False).eval().to(device)
    batch = int(os.environ.get("ATTRIBKIT_BENCH_LRP_VIT_BATCH", 8))
    x = torch.randn(batch, 3, bench_size(), bench_size(), generator=gen).to(device)
    targets = torch.arange(batch, device=device) % 1000
    return model, x, targets


@pytest.mark.parametrize("impl", ["floor", *COMPOSITES])
def test_lrp_vit(run, benchmark, vit, impl):
    model, x, targets = vit
    benchmark.group = f"{MODEL}-b{len(x)}-lrp"
    if impl == "floor":
        run(lambda: forward_backward(model, x, targets), "floor", "forward+backward")
    else:
        run(lambda: ak.explain(model, x, targets, method="lrp", composite=impl), "attribkit", impl)


@pytest.fixture(scope="module")
def llama():
    pytest.importorskip("transformers")
    from attribkit.text.testing import tiny_llama, word_tokenizer

    device = bench_device()
    tokenizer = word_tokenizer()
    model = tiny_llama(tokenizer, layers=4, width=256, heads=4).to(device)
    batch = int(os.environ.get("ATTRIBKIT_BENCH_LRP_TEXT_BATCH", 8))
    tokens = int(os.environ.get("ATTRIBKIT_BENCH_LRP_TEXT_TOKENS", 128))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (batch, tokens), generator=gen).to(device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    targets = torch.arange(batch, device=device) % len(tokenizer)
    try:  # one text: whether lrp runs on text at all
        ak.explain(model, {k: v[:1] for k, v in inputs.items()}, int(targets[0]), method="lrp",
                   tokenizer=tokenizer)
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        pytest.skip(f"lrp does not run on the LLaMA-like model: {type(exc).__name__}: {exc}")
    return model, tokenizer, inputs, targets


def next_token_floor(model, inputs, targets) -> torch.Tensor:
    """One forward + backward of the target token's logit at the last position to the
    input embeddings (what LRP explains on a causal LM)."""
    embeds = model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_()
    logits = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits[:, -1]
    return torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), embeds)[0]


@pytest.mark.parametrize("impl", ["floor", *COMPOSITES])
def test_lrp_llama(run, benchmark, llama, impl):
    model, tokenizer, inputs, targets = llama
    ids = inputs["input_ids"]
    benchmark.group = f"llama-b{ids.shape[0]}x{ids.shape[1]}-lrp"
    if impl == "floor":
        run(lambda: next_token_floor(model, inputs, targets), "floor", "forward+backward")
    else:
        run(lambda: ak.explain(model, inputs, targets, method="lrp", composite=impl, tokenizer=tokenizer),
            "attribkit", impl)


def test_lrp_vit_interleaved(benchmark, vit):
    """The floor and both composites round-robin (``ATTRIBKIT_BENCH_ROUNDS``): the ratios quoted above."""
    model, x, targets = vit
    calls = {"floor": lambda: forward_backward(model, x, targets),
             **{c: (lambda c=c: ak.explain(model, x, targets, method="lrp", composite=c)) for c in COMPOSITES}}
    interleaved(benchmark, calls, MODEL, f"{MODEL}-b{len(x)}-lrp-interleaved")


def test_lrp_llama_interleaved(benchmark, llama):
    """As :func:`test_lrp_vit_interleaved` on the LLaMA-like model."""
    model, tokenizer, inputs, targets = llama
    calls = {"floor": lambda: next_token_floor(model, inputs, targets),
             **{c: (lambda c=c: ak.explain(model, inputs, targets, method="lrp", composite=c, tokenizer=tokenizer))
                for c in COMPOSITES}}
    interleaved(benchmark, calls, "llama", "llama-lrp-interleaved")

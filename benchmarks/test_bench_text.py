"""Text methods against their cost floors, in the same run (issue 25):

* ``integrated_gradients`` on a batch of texts against ``n_steps`` forward+backward
  passes of the same batch to its input embeddings (target: <= 1.1x);
* ``attention_rollout`` against one forward without gradients (target: <= 1.5x).

Models: a LLaMA-like causal LM (the score is the log-probability of a given next
token) and a BERT classifier (a given class), randomly initialised, 4 blocks of width
``ATTRIBKIT_BENCH_TEXT_WIDTH`` (default 256, 4 heads: the shape of BERT-mini), sdpa
attention as shipped; a batch of ``ATTRIBKIT_BENCH_TEXT_BATCH`` (default 16)
texts of ``ATTRIBKIT_BENCH_TEXT_TOKENS`` (default 128) tokens, given as token ids with
an attention mask. ``pytest benchmarks/test_bench_text.py --benchmark-only``; the
summary table (``benchmarks/conftest.py``) gives the ratios.
"""

import os

import pytest
import torch

import attribkit as ak
from benchmarks.conftest import bench_device

pytest.importorskip("transformers")

from attribkit.text.testing import tiny_bert_classifier, tiny_llama, word_tokenizer  # noqa: E402

STEPS = 16
MODELS = {"llama": tiny_llama, "bert": tiny_bert_classifier}


@pytest.fixture(scope="module", params=sorted(MODELS))
def setup(request):
    device = bench_device()
    tokenizer = word_tokenizer()
    width = int(os.environ.get("ATTRIBKIT_BENCH_TEXT_WIDTH", 256))
    model = MODELS[request.param](tokenizer, layers=4, width=width, heads=4).to(device)
    batch = int(os.environ.get("ATTRIBKIT_BENCH_TEXT_BATCH", 16))
    tokens = int(os.environ.get("ATTRIBKIT_BENCH_TEXT_TOKENS", 128))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (batch, tokens), generator=generator).to(device)
    mask = torch.ones_like(ids)
    targets = torch.arange(batch, device=device) % (3 if request.param == "bert" else len(tokenizer))
    inputs = {"input_ids": ids, "attention_mask": mask}
    return request.param, model, tokenizer, inputs, targets


def _score(model, inputs, targets, embeds):
    """The explained score of every text: a class logit, or the log-probability of the
    next token at the last position."""
    logits = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    if logits.ndim == 3:
        logits = logits[:, -1].log_softmax(-1)
    return logits.gather(1, targets[:, None]).sum()


def steps_floor(model, inputs, targets, steps: int) -> None:
    """``steps`` forward+backward passes of the batch to its input embeddings."""
    embeds = model.get_input_embeddings()(inputs["input_ids"]).detach()
    for _ in range(steps):
        point = embeds.clone().requires_grad_()
        torch.autograd.grad(_score(model, inputs, targets, point), point)


def forward_floor(model, inputs) -> None:
    with torch.no_grad():
        model(**inputs)


def test_integrated_gradients(run, benchmark, setup):
    name, model, tokenizer, inputs, targets = setup
    benchmark.group = f"text-{name}-{STEPS}x-forward-backward"
    run(lambda: steps_floor(model, inputs, targets, STEPS), "floor", f"{STEPS}x forward+backward")


@pytest.mark.parametrize("rows", ["budget", "batch"])
def test_integrated_gradients_attribkit(run, benchmark, setup, rows):
    """``rows``: as many rows per forward as the memory budget holds (the default), or
    the user's batch (``internal_batch_size=B``, the floor's forward)."""
    name, model, tokenizer, inputs, targets = setup
    benchmark.group = f"text-{name}-{STEPS}x-forward-backward"
    size = None if rows == "budget" else len(targets)
    run(lambda: ak.explain(model, inputs, targets, method="integrated_gradients", n_steps=STEPS,
                           tokenizer=tokenizer, internal_batch_size=size), "attribkit",
        f"ig rows={rows}")


@pytest.mark.parametrize("impl", ["floor", "attention_rollout", "raw_attention"])
def test_rollout(run, benchmark, setup, impl):
    name, model, tokenizer, inputs, targets = setup
    benchmark.group = f"text-{name}-forward"
    if impl == "floor":
        run(lambda: forward_floor(model, inputs), "floor", "forward")
    else:
        run(lambda: ak.explain(model, inputs, targets, method=impl, tokenizer=tokenizer), "attribkit", impl)

"""LXT (the ``lxt`` package 2.1, AttnLRP's reference implementation) as a test reference,
run in a subprocess because it patches classes globally.

- :func:`lxt_relevance` / :func:`lxt_run`: torchvision ``VisionTransformer`` in this
  interpreter (``run_lxt.py``; LXT's ViT patch works beside transformers 5 once two removed
  helpers are stubbed, in the subprocess only).
- :func:`lxt_llm_relevance` / :func:`lxt_llm_run`: tiny ``LlamaForCausalLM`` / ``GPT2LMHeadModel`` in a second
  virtualenv with ``transformers<5`` (``run_lxt_llm.py``; ``make lxt-venv`` creates
  ``.venv-lxt``, or point ``ATTRIBKIT_LXT_PYTHON`` at another interpreter).

Both raise :class:`LXTUnavailable` when LXT (or the second virtualenv) is missing; tests turn
it into a skip. LXT's licence limits commercial use: it is a test reference only.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VARIANTS = ("attnlrp", "cp_lrp")


class LXTUnavailable(RuntimeError):
    """LXT, or the interpreter that runs it, is not installed."""


def lxt_python() -> Path:
    """The interpreter of the ``transformers<5`` environment (``ATTRIBKIT_LXT_PYTHON`` or
    ``.venv-lxt/bin/python``)."""
    return Path(os.environ.get("ATTRIBKIT_LXT_PYTHON", ROOT / ".venv-lxt" / "bin" / "python"))


def _run(python: str | Path, script: str, jobs: list[dict], timeout: float) -> list[dict]:
    """Save ``jobs``, run ``python script JOBS RESULTS`` and load its results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "TRANSFORMERS_VERBOSITY": "error"}
    with tempfile.TemporaryDirectory(prefix="attribkit-lxt-") as folder:
        jobs_path, results_path = Path(folder, "jobs.pt"), Path(folder, "results.pt")
        torch.save(jobs, jobs_path)
        try:
            done = subprocess.run([str(python), str(HERE / script), str(jobs_path), str(results_path)],
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"LXT's {script} took longer than {timeout:g} s") from None
        if done.returncode:
            raise RuntimeError(f"LXT's {script} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return torch.load(results_path, weights_only=True)


def _job(model_kind: str, config: dict, state_dict: dict, x: torch.Tensor, target: Any,
         variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown LXT variant {variant!r}; expected one of {VARIANTS}")
    target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if target.numel() == 1:
        target = target.expand(x.shape[0])
    return {"kind": model_kind, "config": dict(config), "variant": variant, "x": x.detach().cpu(),
            "target": target.clone(), "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}


def lxt_run(jobs: list[dict], *, timeout: float = 120.0) -> list[dict]:
    """Run several ViT jobs (dicts of :func:`lxt_relevance`'s arguments, either variant) in one
    subprocess; each result has ``relevance``, ``token_relevance`` and ``logits`` (``run_lxt.py``)."""
    if importlib.util.find_spec("lxt") is None:
        raise LXTUnavailable("the `lxt` package is not installed (pip install 'lxt==2.1')")
    return _run(sys.executable, "run_lxt.py", [_job(**job) for job in jobs], timeout)


def lxt_relevance(model_kind: str, config: dict, state_dict: dict, x: torch.Tensor, target: Any,
                  variant: str, *, timeout: float = 120.0) -> torch.Tensor:
    """LXT's relevance at the pixels, ``(B, C, H, W)``, of a torchvision ``VisionTransformer``
    (``model_kind="torchvision_vit"``, ``config`` its keyword arguments) for the target
    class(es): input x gradient of the summed target logits with LXT's ``variant`` rules
    ("attnlrp" or "cp_lrp") in place, in ``x``'s dtype."""
    job = dict(model_kind=model_kind, config=config, state_dict=state_dict, x=x, target=target,
               variant=variant)
    return lxt_run([job], timeout=timeout)[0]["relevance"]


def lxt_llm_run(jobs: list[dict], *, timeout: float = 180.0) -> list[dict]:
    """Several language-model jobs (dicts of :func:`lxt_llm_relevance`'s arguments), one
    subprocess per variant (LXT's LLM patches of the two variants cannot share a process)."""
    python = lxt_python()
    if not python.exists():
        raise LXTUnavailable(f"no {python} (make lxt-venv creates it; transformers<5 and lxt==2.1)")
    prepared = [_job(job["model_kind"], job["config"], job["state_dict"], job["input_ids"],
                     job["target"], job["variant"]) for job in jobs]
    results: list[dict] = [{} for _ in prepared]
    for variant in dict.fromkeys(job["variant"] for job in prepared):
        indices = [i for i, job in enumerate(prepared) if job["variant"] == variant]
        for i, answer in zip(indices, _run(python, "run_lxt_llm.py", [prepared[i] for i in indices],
                                           timeout)):
            results[i] = answer
    return results


def lxt_llm_relevance(model_kind: str, config: dict, state_dict: dict, input_ids: torch.Tensor,
                      target: Any, variant: str, *, timeout: float = 180.0) -> dict:
    """LXT's relevance on a causal LM (``model_kind`` "llama" or "gpt2", ``config`` the
    Hugging Face config's keyword arguments) for ``input_ids`` ``(B, T)``: the explained
    quantity is the logit of token ``target`` (one id, or one per row) at the last position,
    as in LXT's examples. Returns ``relevance`` ``(B, T)`` (input embeddings x gradient,
    summed over the hidden size), ``embedding_relevance`` ``(B, T, D)`` and ``logits``
    ``(B, T, V)``. Runs in the ``transformers<5`` interpreter of :func:`lxt_python`."""
    job = dict(model_kind=model_kind, config=config, state_dict=state_dict, input_ids=input_ids,
               target=target, variant=variant)
    return lxt_llm_run([job], timeout=timeout)[0]

"""The synthetic text task: one keyword decides the label, and the keyword's position is
the evidence.

Each text is ``length`` words (``min_words`` to ``max_words``) drawn from
:data:`DISTRACTORS`, with one keyword of its class (:data:`KEYWORDS`, three classes) put
at a random position. Distractors are drawn uniformly whatever the class, so they carry
no class signal: the keyword is the only evidence, and :func:`make_texts` records its
token position. A quarter of the training texts have no keyword and a random label, so
that the model answers about 1/3 for each class without one: no class can be learnt as
"neither of the other keywords", and every class's keyword is evidence the model reads. The tokenizer is word level, built on the spot
(:func:`attribkit.text.testing.word_tokenizer`, ``[CLS] ... [SEP]``); the model is a
tiny Hugging Face ``BertForSequenceClassification`` trained on 3,000 texts with the
bench's one recipe (:mod:`attribkit.bench.training`) and cached.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from attribkit.bench.training import Recipe, cached_model, config_key, fit_classifier

#: three classes, two keywords each: a text holds one keyword of its class
KEYWORDS: tuple[tuple[str, ...], ...] = (("excellent", "superb"), ("terrible", "awful"), ("average", "mediocre"))
CLASS_NAMES = ("positive", "negative", "neutral")
#: words with no class signal (drawn uniformly, whatever the class)
DISTRACTORS = tuple(("the a an this that film movie plot story actor scene music ending it was is "
                     "and but with of in on at very quite rather script camera cast director set "
                     "night day long short old new first last").split())
CACHE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class TextTrainConfig(Recipe):
    """The text task's data, model and training (every field goes into the cache key)."""

    n_train: int = 3000
    n_test: int = 600
    epochs: int = 6
    lr: float = 3e-3
    min_words: int = 6
    max_words: int = 24
    hidden: int = 32
    layers: int = 2
    heads: int = 2
    blank: float = 0.25  # share of training texts without a keyword, with a random label


@dataclasses.dataclass(frozen=True)
class SyntheticTexts:
    """Texts with their labels and evidence.

    ``texts``: the strings; ``labels`` ``(N,)`` int64; ``images`` ``(N, T)`` int64 token
    ids, right-padded (the name :func:`~attribkit.bench.training.fit_classifier` reads),
    ``mask`` ``(N, T)`` bool, real tokens; ``evidence`` ``(N, T)`` bool, the keyword's
    token; ``keyword_index`` ``(N,)`` its token position (-1: none)."""

    texts: list[str]
    labels: np.ndarray
    images: np.ndarray
    mask: np.ndarray
    evidence: np.ndarray
    keyword_index: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    """The task's word-level tokenizer (``[PAD]`` = 0, texts wrapped as ``[CLS] ... [SEP]``)."""
    from attribkit.text.testing import word_tokenizer

    return word_tokenizer([*DISTRACTORS, *(w for words in KEYWORDS for w in words)], cls_sep=True)


def make_texts(n: int, *, seed: int = 0, min_words: int = 6, max_words: int = 24,
               blank: float = 0.0) -> SyntheticTexts:
    """``n`` texts drawn from ``seed``: class, length, distractors, keyword and its position;
    a share ``blank`` of them without a keyword (a random label, no evidence,
    ``keyword_index`` -1)."""
    if n < 1 or not 1 <= min_words <= max_words or not 0 <= blank < 1:
        raise ValueError(f"need n >= 1, 1 <= min_words <= max_words and 0 <= blank < 1, got {n}, {min_words}, "
                         f"{max_words}, {blank}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(KEYWORDS), n)
    texts, where = [], []
    for label in labels:
        length = int(rng.integers(min_words, max_words + 1))
        words = list(rng.choice(DISTRACTORS, length))
        at = int(rng.integers(0, length))
        if blank and rng.random() < blank:
            at = -1
        else:
            words[at] = KEYWORDS[label][int(rng.integers(0, len(KEYWORDS[label])))]
        texts.append(" ".join(words))
        where.append(at + 1 if at >= 0 else -1)  # after [CLS]
    tok = tokenizer()
    encoded = tok(texts, padding=True, return_tensors="np")
    ids, mask = encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(bool)
    evidence = np.zeros_like(mask)
    rows = np.flatnonzero(np.asarray(where) >= 0)
    evidence[rows, np.asarray(where)[rows]] = True
    return SyntheticTexts(texts, labels.astype(np.int64), ids, mask, evidence, np.asarray(where, dtype=np.int64))


class _Logits(nn.Module):
    """The classifier as the recipe trains it: padded ids in (padding = id 0), logits out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def build_classifier(config: TextTrainConfig) -> nn.Module:
    """A randomly initialised tiny ``BertForSequenceClassification`` for the task's tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = tokenizer()
    bert = BertConfig(vocab_size=len(tok), hidden_size=config.hidden, num_hidden_layers=config.layers,
                      num_attention_heads=config.heads, intermediate_size=2 * config.hidden,
                      num_labels=len(KEYWORDS), max_position_embeddings=config.max_words + 8,
                      pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(bert).eval()


def text_model(config: TextTrainConfig = TextTrainConfig(),
               log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The trained classifier (cached by config) and its record (test accuracy, seconds, path)."""
    import transformers

    def build() -> nn.Module:
        return _Logits(build_classifier(config))

    def fit() -> tuple[nn.Module, dict]:
        words = dict(min_words=config.min_words, max_words=config.max_words)
        train = make_texts(config.n_train, seed=config.seed, blank=config.blank, **words)
        test = make_texts(config.n_test, seed=config.seed + 10_000, **words)
        return fit_classifier(build, train, test, config, log=log)

    key = config_key(config, CACHE_VERSION, transformers=transformers.__version__.split(".")[0])
    wrapped, record = cached_model(f"text-bert-{key}", build, fit)
    return wrapped.model.eval(), record

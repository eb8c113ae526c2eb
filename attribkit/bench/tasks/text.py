"""``text``: synthetic texts whose label one keyword decides, and a tiny BERT classifier.

Each text (:func:`attribkit.bench.text_task.make_texts`) is 6 to 24 distractor words
with one keyword of its class at a random position; the keyword's token is the
evidence. The model is a tiny Hugging Face ``BertForSequenceClassification`` trained on
3,000 texts (:func:`~attribkit.bench.text_task.text_model`, seconds on a CPU, cached).
The bench runs the text methods and the token metrics on it
(:mod:`attribkit.bench.text_bench`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from attribkit.bench.tasks.base import Log, Task
from attribkit.bench.text_task import SyntheticTexts, TextTrainConfig, make_texts, text_model, tokenizer


@dataclasses.dataclass(frozen=True)
class TextTask(Task):
    """The keyword task: :meth:`model`, :meth:`data` (texts, labels, evidence tokens),
    :meth:`tokenizer`, and :meth:`run_bench`, the runner ``attribkit bench`` hands it to."""

    name: str = "text"
    description: str = "synthetic texts (one class keyword among distractor words) + a tiny BERT classifier"
    evidence: str = "the keyword's token"
    config: TextTrainConfig = TextTrainConfig()

    def model(self, seed: int = 0, log: Log = print) -> nn.Module:
        """The classifier trained with ``seed`` (from the cache once trained)."""
        model, record = text_model(dataclasses.replace(self.config, seed=seed))
        log(f"{self.name}: BERT classifier, test accuracy {record['test_accuracy']:.3f}, trained in "
            f"{record['train_seconds']:.0f} s ({record['path']})")
        return model

    def data(self, n: int, seed: int = 0) -> SyntheticTexts:  # type: ignore[override]
        """``n`` held-out texts (drawn from ``seed + 20_000``, seen by neither training nor testing)."""
        return make_texts(n, seed=seed + 20_000, min_words=self.config.min_words, max_words=self.config.max_words)

    def tokenizer(self) -> Any:
        """The word-level tokenizer of the texts."""
        return tokenizer()

    def run_bench(self, config: Any, *, progress: bool = True, log: Log = print) -> list[dict]:
        """``attribkit bench --task text``: :func:`attribkit.bench.text_bench.run_text_bench`."""
        from attribkit.bench.text_bench import run_text_bench

        return run_text_bench(config, progress=progress, log=log)


TASK = TextTask()

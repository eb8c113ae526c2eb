"""One view of a tokenizer: a Hugging Face tokenizer (``PreTrainedTokenizerBase``) or a
``tokenizers.Tokenizer``, as the text methods need it: ids of texts, the strings of ids,
the special ids and the padding id."""

from __future__ import annotations

from typing import Any

from attribkit.errors import InputError


class Vocab:
    """What attribkit reads from ``tokenizer`` (``None``: tokens are shown as ``#id``)."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer
        self.kind = _kind(tokenizer)

    def encode(self, texts: list[str], *, special: bool = True) -> list[list[int]]:
        """Token ids of each text (with the tokenizer's special tokens when ``special``)."""
        if self.kind == "hf":
            return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=special)["input_ids"]]
        if self.kind == "tokenizers":
            return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=special)]
        raise InputError("texts given as strings need a tokenizer: explain(model, texts, tokenizer=tok) "
                         "(a Hugging Face tokenizer or a tokenizers.Tokenizer), or pass token ids")

    def tokens(self, ids: list[int]) -> list[str]:
        """The token strings of ``ids``."""
        if self.kind == "hf":
            return [str(t) for t in self.tokenizer.convert_ids_to_tokens(list(ids))]
        if self.kind == "tokenizers":
            return [self.tokenizer.id_to_token(i) or f"#{i}" for i in ids]
        return [f"#{i}" for i in ids]

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (their tokens joined by spaces without a tokenizer)."""
        if self.kind in ("hf", "tokenizers"):
            return self.tokenizer.decode(list(ids))
        return " ".join(self.tokens(ids))

    @property
    def special_ids(self) -> set[int]:
        """Ids of the special tokens (``[CLS]``, ``</s>``, padding, ...)."""
        if self.kind == "hf":
            return set(int(i) for i in self.tokenizer.all_special_ids)
        if self.kind == "tokenizers":
            return {i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        return set()

    @property
    def pad_id(self) -> int | None:
        """The padding token's id, else ``None``."""
        if self.kind == "hf":
            return self.tokenizer.pad_token_id
        if self.kind == "tokenizers":
            padding = self.tokenizer.padding
            if padding:
                return int(padding["pad_id"])
            for name in ("[PAD]", "<pad>", "<|pad|>"):
                found = self.tokenizer.token_to_id(name)
                if found is not None:
                    return int(found)
        return None

    @property
    def eos_id(self) -> int | None:
        """The end-of-sequence id (greedy continuations stop there), else ``None``."""
        if self.kind == "hf":
            return self.tokenizer.eos_token_id
        return None


def _kind(tokenizer: Any) -> str | None:
    if tokenizer is None:
        return None
    if hasattr(tokenizer, "convert_ids_to_tokens") and callable(tokenizer):
        return "hf"
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "id_to_token"):
        return "tokenizers"
    raise InputError(f"tokenizer= takes a Hugging Face tokenizer or a tokenizers.Tokenizer, got "
                     f"{type(tokenizer).__name__}")

"""Tiny language models and a tokenizer trained on the spot, for tests, docs and the
bench (nothing is downloaded). Needs the ``hf`` extra (``transformers``, ``tokenizers``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WORDS = ("the a cat dog bird sat ran on under mat rug red blue green good bad great awful movie "
         "film was is very not quite plot acting").split()
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[EOS]")


def word_tokenizer(words: Sequence[str] = WORDS, *, cls_sep: bool = False) -> Any:
    """A word-level Hugging Face tokenizer (``PreTrainedTokenizerFast``) trained on ``words``:
    specials ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[EOS]``; with ``cls_sep``,
    every text is wrapped as ``[CLS] ... [SEP]`` (BERT-like)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(special_tokens=list(SPECIAL)))
    if cls_sep:
        raw.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", raw.token_to_id("[CLS]")),
                                                     ("[SEP]", raw.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", eos_token="[EOS]")


def _ids(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's special ids for a config (the defaults name GPT-2's 50256)."""
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.eos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def tiny_gpt2(tokenizer: Any, *, seed: int = 0, layers: int = 2, width: int = 16, heads: int = 2) -> Any:
    """A randomly initialised GPT-2 causal LM (``GPT2LMHeadModel``), in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=width, n_layer=layers, n_head=heads, n_positions=256,
                        **_ids(tokenizer))
    return GPT2LMHeadModel(config).eval()


def tiny_llama(tokenizer: Any, *, seed: int = 0, layers: int = 2, width: int = 16, heads: int = 2) -> Any:
    """A randomly initialised LLaMA-like causal LM (RMSNorm, rotary positions, SwiGLU,
    grouped-query attention), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=256, **_ids(tokenizer))
    return LlamaForCausalLM(config).eval()


def tiny_bert_classifier(tokenizer: Any, *, classes: int = 3, seed: int = 0, layers: int = 2,
                         width: int = 16, heads: int = 2) -> Any:
    """A randomly initialised BERT sequence classifier, in eval mode."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * width, num_labels=classes,
                        max_position_embeddings=256, **_ids(tokenizer))
    return BertForSequenceClassification(config).eval()

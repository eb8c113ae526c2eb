"""``hf:PATH``: a Hugging Face model and tokenizer saved in a local folder
(``model.save_pretrained(PATH)``, ``tokenizer.save_pretrained(PATH)``).

Nothing is downloaded (``local_files_only=True``) and no code from the folder runs
(``trust_remote_code`` stays off). The model class follows the ``architectures`` of
the folder's ``config.json``: a sequence classifier loads with
``AutoModelForSequenceClassification``, a causal LM with ``AutoModelForCausalLM``,
anything else with ``AutoModel``. Needs the ``hf`` extra (``transformers``,
``tokenizers``). Used by :func:`attribkit.models.open_model` and
:func:`attribkit.models.load_tokenizer`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from attribkit.errors import MissingDependencyError, ModelLoadError

HUB_HINT = ("hf:PATH names a local folder (nothing is downloaded); for a model of the Hugging Face "
            "Hub, download it once (hf download NAME --local-dir DIR) and pass hf:DIR")

#: the files one of which a folder written by ``tokenizer.save_pretrained`` holds
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


def _transformers(spec: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(f"{spec} needs transformers: pip install \"attribkit[hf]\"") from None
    return transformers


def hf_folder(path: str, spec: str) -> Path:
    """``path`` as a folder that exists; :class:`ModelLoadError` naming it otherwise."""
    if not path:
        raise ModelLoadError(f"{spec}: give the folder, hf:PATH")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelLoadError(f"{spec}: no such folder {folder}; {HUB_HINT}")
    if not folder.is_dir():
        raise ModelLoadError(f"{spec}: {folder} is a file; hf:PATH names a folder written by save_pretrained")
    return folder


def auto_class_name(architectures: list[str] | None) -> str:
    """The ``transformers`` Auto class for a config's ``architectures``: a sequence
    classifier's, a causal LM's, else ``AutoModel``."""
    from transformers.models.auto import modeling_auto

    classifiers = set(modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values())
    causal = set(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    for name in architectures or []:
        if name in classifiers or name.endswith("ForSequenceClassification"):
            return "AutoModelForSequenceClassification"
        if name in causal or name.endswith("ForCausalLM"):
            return "AutoModelForCausalLM"
    return "AutoModel"


def open_hf(path: str, spec: str) -> tuple[Any, tuple[str, ...] | None]:
    """The model saved in the folder ``path`` (eval mode, CPU) and its class names (the
    config's ``id2label`` unless they are the default ``LABEL_N``)."""
    transformers = _transformers(spec)
    folder = hf_folder(path, spec)
    if not (folder / "config.json").is_file():
        found = sorted(p.name for p in folder.iterdir())[:5]
        raise ModelLoadError(f"{spec}: {folder} holds no config.json, so it is not a model saved with "
                             f"save_pretrained (it holds: {', '.join(found) or 'nothing'})")
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        auto = getattr(transformers, auto_class_name(getattr(config, "architectures", None)))
        model = auto.from_pretrained(folder, config=config, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{spec}: cannot load the model saved in {folder}: {_first_line(exc)}") from None
    labels = getattr(config, "id2label", None) or {}
    names = tuple(str(labels[i]) for i in sorted(labels))
    if not names or all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        names = None
    return model.eval(), names


def hf_tokenizer(path: str, spec: str) -> Any:
    """The tokenizer saved in the folder ``path`` (``AutoTokenizer``), or read from a
    ``tokenizers`` JSON file (``tokenizers.Tokenizer.from_file``)."""
    folder = Path(path).expanduser()
    if folder.is_file() and folder.suffix == ".json":
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependencyError(f"{spec} needs tokenizers: pip install \"attribkit[hf]\"") from None
        try:
            return Tokenizer.from_file(str(folder))
        except Exception as exc:  # tokenizers raises its own Exception for a bad file
            raise ModelLoadError(f"{spec}: {folder} is not a tokenizers JSON file: {_first_line(exc)}") from None
    transformers = _transformers(spec)
    folder = hf_folder(path, spec)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{spec}: {folder} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                             "save one there with tokenizer.save_pretrained, or name another folder (--tokenizer in "
                             "the command line)")
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{spec}: no tokenizer can be read from {folder} (save one there with "
                             f"tokenizer.save_pretrained): {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

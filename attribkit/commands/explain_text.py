"""``attribkit explain-text MODEL TEXT...``: token attributions of a language model,
highlighted in the terminal, and optionally as a standalone HTML page or JSON.

``MODEL`` is ``hf:PATH`` (a folder written by ``save_pretrained``; its tokenizer is read
from the same folder unless ``--tokenizer`` names another) or ``PKG.MOD:FACTORY`` (then
``--tokenizer`` is needed). Every argument is checked, and the tokenizer read, before
the model is loaded.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any

from attribkit.errors import InputError, InvalidOptionError


def add_parser(sub: Any) -> None:
    """The ``explain-text`` sub-command's arguments, on ``sub`` (the sub-parsers)."""
    p = sub.add_parser("explain-text", help="token attributions of a language model (a classifier or a causal "
                       "LM) for a few texts, highlighted in the terminal; --html and --json write them out")
    p.add_argument("model", help="hf:PATH (a folder saved with save_pretrained: model and tokenizer) or "
                                 "PKG.MOD:FACTORY (runs that module's code; needs --tokenizer)")
    p.add_argument("texts", nargs="+", help="the texts to explain")
    p.add_argument("--method", default="saliency", help="a method with a text kernel (default: saliency; "
                                                        "`attribkit methods` lists them)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--target", type=int, help="a class index (classifier) or the next token's id (causal "
                                                 "LM); default: the top class, or the greedy continuation")
    what.add_argument("--continuation", action="append", metavar="STR",
                      help="a causal LM's continuation to explain: once for every text, or once per text")
    p.add_argument("--max-new-tokens", type=int, default=1,
                   help="tokens of the greedy continuation when no target is given (default 1)")
    p.add_argument("--score", choices=("log_prob", "prob", "logit"),
                   help="what a continuation's token contributes (default: log_prob)")
    p.add_argument("--tokenizer", help="a folder saved with tokenizer.save_pretrained, or a tokenizers JSON "
                                       "file (default: the hf:PATH folder)")
    p.add_argument("--skip-special-tokens", action="store_true",
                   help="leave special tokens ([CLS], [SEP], </s>) out of the attributions")
    p.add_argument("--option", action="append", metavar="NAME=VALUE",
                   help="a method option, e.g. n_steps=32 (repeatable; values read as JSON)")
    p.add_argument("--per-output-token", action="store_true",
                   help="for a continuation, also a line per output token (its row of the matrix)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the tokens (24-bit ANSI backgrounds): auto (default: when stdout is a "
                        "terminal and NO_COLOR is unset), always, never (values in brackets instead)")
    p.add_argument("--html", metavar="OUT.html", help="also write the tokens as a standalone HTML page")
    p.add_argument("--json", action="store_true", help="print the tokens and values as JSON instead")
    p.set_defaults(func=cmd_explain_text)


def method_options(items: list[str] | None) -> dict[str, Any]:
    """``["n_steps=32", "baseline=\\"[PAD]\\""]`` -> ``{"n_steps": 32, ...}`` (JSON values, else strings)."""
    options: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise InvalidOptionError(f"--option takes NAME=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[name.strip()] = tuple(value) if isinstance(value, list) else value
    return options


def check_arguments(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The tokenizer's spec and the method's options, after checking every argument
    (one-line errors, before anything is loaded)."""
    from attribkit.api import get_method

    spec = get_method(args.method)
    if spec.text is None:
        raise InvalidOptionError(f"method {spec.name!r} has no kernel for text; `attribkit methods` lists "
                                 "the methods whose inputs include text")
    options = method_options(args.option)
    spec.for_text().bind_options(options)  # unknown options are named before the model loads
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.continuation and len(args.continuation) not in (1, len(args.texts)):
        raise InputError(f"give one --continuation, or one per text ({len(args.texts)}), "
                         f"got {len(args.continuation)}")
    empty = [i for i, t in enumerate(args.texts) if not t.strip()]
    if empty:
        raise InputError(f"text {empty[0]} is empty")
    if args.html:
        out = Path(args.html)
        if out.is_dir():
            raise InputError(f"--html {out} is a folder; name a file, e.g. {out / 'tokens.html'}")
        if not out.parent.is_dir():
            raise InputError(f"--html {out}: no such folder {out.parent}")
    if args.tokenizer:
        return args.tokenizer, options
    if args.model.startswith("hf:"):
        return args.model, options
    raise InputError(f"{args.model} is not an hf:PATH folder, so it has no tokenizer: pass --tokenizer PATH "
                     "(a folder saved with tokenizer.save_pretrained, or a tokenizers JSON file)")


def cmd_explain_text(args: argparse.Namespace) -> int:
    """``attribkit explain-text``: the tokens highlighted on stdout (or JSON), ``--html`` a page."""
    tokenizer_spec, options = check_arguments(args)
    from attribkit.commands.common import factories_from_cwd
    from attribkit.models import load_tokenizer, open_model

    tokenizer = load_tokenizer(tokenizer_spec)
    if not args.model.startswith("hf:"):
        factories_from_cwd(args.model)
    else:
        quiet_transformers()
    loaded = open_model(args.model, log=None)
    from attribkit.api import explain
    from attribkit.text.targets import Continuation

    target: Any = args.target
    if args.continuation:
        target = Continuation(args.continuation[0] if len(args.continuation) == 1 else list(args.continuation))
    if args.score:
        options["score"] = args.score
    result = explain(loaded.model, list(args.texts), target, method=args.method, tokenizer=tokenizer,
                     max_new_tokens=args.max_new_tokens, skip_special_tokens=args.skip_special_tokens,
                     **options)
    names = list(loaded.class_names) if loaded.class_names else None
    if args.json:
        print(json.dumps(result_json(result, names), indent=1))
    else:
        from attribkit.text.views import terminal_tokens

        color = {"always": True, "never": False}.get(args.color)
        print(terminal_tokens(result, color=color, stream=sys.stdout, per_output=args.per_output_token,
                              class_names=names))
    if args.html:
        path = write_html(result, Path(args.html), names)
        print(f"html: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def quiet_transformers() -> None:
    """No "Loading weights" progress bar from transformers on stderr (this process only)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # open_model names the missing extra
        return
    hf_logging.disable_progress_bar()


def result_json(result: Any, class_names: list[str] | None = None) -> dict[str, Any]:
    """A token attribution as plain JSON: per text its tokens, values, special flags and
    target (class, or output tokens and the per-output-token matrix)."""
    values = result.numpy()
    special = result.special.numpy() if result.special is not None else None
    texts = []
    for i, tokens in enumerate(result.tokens):
        n = len(tokens)
        entry: dict[str, Any] = {"text": result.texts[i] if result.texts else None, "tokens": list(tokens),
                                 "values": [float(v) for v in values[i, :n]]}
        if special is not None:
            entry["special"] = [bool(s) for s in special[i, :n]]
        if result.target is not None:
            entry["target"] = int(result.target[i])
            if class_names and 0 <= entry["target"] < len(class_names):
                entry["class_name"] = class_names[entry["target"]]
        if result.output_tokens is not None:
            outputs = result.output_tokens[i]
            entry["output_tokens"] = list(outputs)
            entry["matrix"] = [[float(v) for v in row[:n]] for row in result.matrix[i, :len(outputs)].tolist()]
        texts.append(entry)
    return {"method": result.method, "kind": result.meta.get("kind"), "score": result.meta.get("score"),
            "texts": texts}


def write_html(result: Any, path: Path, class_names: list[str] | None = None) -> Path:
    """A standalone UTF-8 HTML page of every text's tokens (:func:`attribkit.text.views.html_tokens`)."""
    from attribkit.text.views import html_tokens

    body = html_tokens(result, limit=len(result.tokens), class_names=class_names)
    title = html.escape(f"attribkit · {result.method}")
    path.write_text(f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
                    f'<body style="margin:1.5em">{body}</body></html>\n', encoding="utf-8")
    return path

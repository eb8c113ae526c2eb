"""Every sub-command and every option of ``attribkit`` says what it does (issue 28: ``demo`` was
"the main job on the embedded default")."""

import argparse

from attribkit.cli import build_parser


def subcommands() -> dict[str, tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    return {name: (helps.get(name) or "", p) for name, p in sub.choices.items()}


def test_every_subcommand_and_option_has_help():
    found = subcommands()
    assert {"methods", "metrics", "plugins", "explain", "explain-dataset", "verify", "bench", "report",
            "demo"} <= set(found)
    silent = [name for name, (text, _) in found.items() if len(text.split()) < 4]
    silent += [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, (_, p) in found.items()
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not silent, silent


def test_demo_says_what_it_does():
    text = subcommands()["demo"][0]
    assert "embedded default" not in text
    for word in ("train", "every method", "benchmark", "report"):
        assert word in text, word

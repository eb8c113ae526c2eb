"""The bodies of ``attribkit`` sub-commands that outgrew :mod:`attribkit.cli`.

``cli.py`` builds the parser and dispatches; a command here takes the parsed
``argparse.Namespace`` and returns the exit code. Nothing here imports
``attribkit.cli`` (the CLI is the top floor).
"""

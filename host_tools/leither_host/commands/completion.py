# `leither completion bash|zsh`: a shell completion script generated from the parser itself
# (shtab), so every verb, action and option completes and never drifts from the code.
"""The completion verb."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  leither completion bash > ~/.local/share/bash-completion/completions/leither
  leither completion zsh > "${fpath[1]}/_leither"
  source <(leither completion bash)       # this shell only
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="print a bash or zsh completion script",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from leither_host.cli import make_parser

    print(shtab.complete(make_parser(), shell=args.shell))
    return 0

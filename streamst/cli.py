"""The ``streamst`` command line.

Each sub-command lives in ``streamst/commands/<name>.py`` and exposes
``register(subparsers)``; argparse is mapped onto config dataclasses there, at the edge.
A command returns its exit code. Errors meant for users are :class:`UserError`:
one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from streamst.errors import UserError

COMMANDS = (
    "models",
    "transcribe",
    "translate",
    "eval",
    "testset",
    "score",
    "bench",
    "mic",
    "serve",
    "train",
    "manifest",
    "engine",
    "corpus",
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamst", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # only the command being run is imported (each pulls in its own heavy modules); --help and
    # unknown commands import them all
    wanted = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")][:1]
    names = [n for n in COMMANDS if n in wanted] or COMMANDS
    for name in names:
        importlib.import_module(f"streamst.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    # third-party libraries (FunASR) log chatter on the root logger: show only errors there
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamst").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"streamst {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

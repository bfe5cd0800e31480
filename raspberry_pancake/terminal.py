"""Command-line plumbing shared by every entry script.

``run`` maps user errors to one line on stderr and an exit code, and leaves a
traceback only for real bugs (the approach of piwheels' ``terminal.py``).
``ArgumentParser`` makes argparse's own errors follow the same one-line rule.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from .exc import UserError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        self.exit(2, f"{self.prog}: error: {message}\n")


def configure_logging(level: int = logging.INFO, handler: Optional[logging.Handler] = None):
    """Configure the root logger once, from the CLI layer only."""
    handler = handler or logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def program_name(script: str) -> str:
    """The name this process was started as: ``script`` from a checkout (the spec's
    messages say "pancake.py: error: ..."), the command's name when installed."""
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return started if started and not started.endswith(".py") else script


def run(main: Callable[[Optional[Sequence[str]]], int], argv=None, prog: str = "") -> int:
    """Call ``main(argv)``; report a ``UserError`` as one line and return its code."""
    try:
        return main(argv)
    except UserError as e:
        name = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "pancake")
        print(f"{name}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than zero")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer of zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number greater than zero")
    return value

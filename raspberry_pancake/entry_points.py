"""Where every program starts: the installed commands (pyproject.toml's
``[project.scripts]``) and the scripts of a checkout (``pancake.py``,
``postproc.py``, ``util/*.py``), which are three-line shims calling these.

Each function imports its program's module only when called, so that
``pancake-cleanup`` on a small Pi does not load tornado, numpy and PyAV.
``terminal.run`` turns a user's mistake into one line and an exit code.
"""

from __future__ import annotations

import sys

from .terminal import program_name, run


def pancake() -> None:
    """``pancake`` and ``pancake.py``: the camera server."""
    from .pancake_cli import main

    sys.exit(run(main, prog=program_name("pancake.py")))


def postproc() -> None:
    """``pancake-postproc`` and ``postproc.py``: convert, upload, notify."""
    from .postproc.cli import main

    sys.exit(run(main, prog=program_name("postproc.py")))


def set_password() -> None:
    """``pancake-set-password`` and ``util/set_password.py``."""
    from .set_password_cli import main

    sys.exit(run(main))


def cleanup() -> None:
    """``pancake-cleanup days|files|size|free``."""
    from .cleanup_cli import main

    sys.exit(run(main))


def cleanup_script(script: str) -> None:
    """``util/<script>``: one cleanup command under its original name."""
    from .cleanup_cli import script_main

    sys.exit(run(lambda argv: script_main(script, argv)))

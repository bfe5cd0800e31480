"""Loading the user's ``detect()`` from customize.py, refused early if it cannot work."""

from __future__ import annotations

import importlib.util
import inspect
import os
from typing import Callable

from ..exc import CustomizeError


def load_detect(path: str, mode: str) -> Callable:
    """Import ``path`` and return its ``detect``; raise CustomizeError saying what is wrong.

    ``mode`` is ``"image"`` (``detect(bytes)``) or ``"no-image"`` (``detect()``);
    a function that cannot be called that way is refused now rather than failing
    on every frame later.
    """
    if not os.path.isfile(path):
        raise CustomizeError(f"--customize: {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("customize", path)
    if spec is None or spec.loader is None:
        raise CustomizeError(f"--customize: {path!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # a SystemExit in user code is still a user error
        raise CustomizeError(f"--customize: {path!r} failed to import: {e!r}") from None
    detect = getattr(module, "detect", None)
    if not callable(detect):
        raise CustomizeError(f"--customize: {path!r} does not define a function detect()")
    args = ("rgb",) if mode == "image" else ()
    try:
        inspect.signature(detect).bind(*args)
    except TypeError:
        wanted = "detect(bytes)" if mode == "image" else "detect()"
        raise CustomizeError(
            f"--customize: {path!r}: --detect {mode} calls {wanted}, "
            f"which its detect{inspect.signature(detect)} does not accept"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): let it run
    return detect

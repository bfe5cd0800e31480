"""Stands in for the checkout's raspberry_pancake package, for the scripts in util/.

Python looks for modules first in a script's own folder, so
``python3 util/limit_days.py`` finds this folder when it imports
``raspberry_pancake``, not the real package one folder up. This file loads the
real package from its location (importlib's documented way to import a source
file directly) and puts it in ``sys.modules`` in its own place: the import
statement then hands the real package to the script, and submodules such as
``raspberry_pancake.cleanup`` come from the real package's folder. The module
search path is left as it is. An installed package does not need this: the
installed commands (``pancake-cleanup``, ``pancake-set-password``) import it
directly.
"""

import importlib.util
import os
import sys

NAME = "raspberry_pancake"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDER = os.path.join(CHECKOUT, NAME)

_spec = importlib.util.spec_from_file_location(
    NAME, os.path.join(FOLDER, "__init__.py"), submodule_search_locations=[FOLDER]
)
_package = importlib.util.module_from_spec(_spec)
sys.modules[NAME] = _package
_spec.loader.exec_module(_package)

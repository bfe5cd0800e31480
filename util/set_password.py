#!/usr/bin/env python3
"""Write the password hash file used by ``pancake.py --login``.

    python3 util/set_password.py                 # asks twice, writes password.txt
    python3 util/set_password.py /etc/pancake/pw # another file
    echo 'secret' | python3 util/set_password.py password.txt   # from a script

The file holds a salted scrypt hash and is created with mode 0600.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raspberry_pancake.set_password_cli import main  # noqa: E402
from raspberry_pancake.terminal import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(main, prog="set_password.py"))

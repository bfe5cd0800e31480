#!/usr/bin/env python3
"""Write the password hash file for pancake.py --login (--help says more).

Installed as a package, the same program is `pancake-set-password`.
"""

from raspberry_pancake.entry_points import set_password

if __name__ == "__main__":
    set_password()

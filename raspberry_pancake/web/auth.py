"""Password hashes for ``--login``: the original project's and our salted scrypt one.

The original wrote the bare SHA-512 hex digest of the password, alone in the
file; such files keep working. ``util/set_password.py`` writes the salted scrypt
format instead, ``scrypt$N$r$p$<salt b64>$<hash b64>``. Both compare in constant
time.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from ..exc import PasswordFileError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # about 16 MiB and well under a second on a Pi Zero
SCRYPT_DKLEN = 32
#: the most memory one check may take; a file asking for more is refused when read
SCRYPT_MAXMEM = 64 * 1024 * 1024
_LEGACY = re.compile(r"[0-9a-fA-F]{128}")
_SCRYPT = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


@dataclass(frozen=True)
class PasswordHash:
    """A parsed hash file; ``verify`` is the only thing the web layer needs."""

    scheme: str  # "sha512" (the original's) or "scrypt"
    digest: bytes
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0

    @property
    def legacy(self) -> bool:
        """The original's unsalted SHA-512: millions of guesses a second offline."""
        return self.scheme == "sha512"

    def verify(self, password: str) -> bool:
        """Slow on purpose (scrypt): call it on a worker thread, never on the IOLoop."""
        candidate = password.encode("utf-8")
        if self.scheme == "sha512":
            computed = hashlib.sha512(candidate).digest()
        else:
            computed = hashlib.scrypt(
                candidate,
                salt=self.salt,
                n=self.n,
                r=self.r,
                p=self.p,
                maxmem=SCRYPT_MAXMEM + 1024 * 1024,
                dklen=len(self.digest),
            )
        return hmac.compare_digest(computed, self.digest)


def parse_hash(text: str) -> PasswordHash:
    """Parse the content of a hash file; raise ValueError when it is neither format."""
    text = text.strip()
    if _LEGACY.fullmatch(text):
        return PasswordHash("sha512", bytes.fromhex(text))
    m = _SCRYPT.fullmatch(text)
    if m:
        n, r, p = (int(g) for g in m.group(1, 2, 3))
        if n < 2 or n & (n - 1) or not (1 <= r <= 64 and 1 <= p <= 16) or n > 2**20:
            raise ValueError("scrypt parameters out of range")
        if 128 * n * r > SCRYPT_MAXMEM:
            raise ValueError("scrypt parameters need too much memory")
        salt = base64.b64decode(m.group(4), validate=True)
        digest = base64.b64decode(m.group(5), validate=True)
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("salt or hash too short")
        return PasswordHash("scrypt", digest, salt, n, r, p)
    raise ValueError("not a password hash")


def hash_password(password: str) -> str:
    """The scrypt line ``util/set_password.py`` writes."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM + 1024 * 1024,
        dklen=SCRYPT_DKLEN,
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def load_password_file(path: str) -> PasswordHash:
    """Read ``--login``'s file; every failure becomes one PasswordFileError line."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(4096)
    except FileNotFoundError:
        raise PasswordFileError(
            f"password file {path!r} does not exist; create it with util/set_password.py"
        ) from None
    except IsADirectoryError:
        raise PasswordFileError(f"password file {path!r} is a directory") from None
    except PermissionError:
        raise PasswordFileError(f"password file {path!r} is not readable by this user") from None
    except UnicodeDecodeError:
        raise PasswordFileError(f"password file {path!r} is not a password hash") from None
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
            raise  # the process is short of something for a moment; the file may be fine
        raise PasswordFileError(f"password file {path!r}: {e.strerror}") from None
    try:
        return parse_hash(text)
    except ValueError:
        raise PasswordFileError(
            f"password file {path!r} holds no valid hash; write it with util/set_password.py"
        ) from None

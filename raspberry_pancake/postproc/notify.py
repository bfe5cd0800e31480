"""Telegram notifications through the Bot API (``sendMessage`` and ``sendVideo``).

Plain ``urllib`` with a small multipart encoder: no extra dependency. The bot token
is part of every request URL, so it is scrubbed from anything that gets logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Optional, Tuple

from ..exc import NotifyError

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telegram.org"

#: The Bot API refuses uploads above 50 MB; such a video is announced by a message.
MAX_VIDEO_BYTES = 50 * 1000 * 1000

#: Seconds for a request without a file; a video gets more, by its size.
REQUEST_TIMEOUT = 30.0


def detection_text(detection: bool, conversion_failed: bool = False) -> str:
    """The original project's texts."""
    text = f"Detection changed to {detection}"
    if conversion_failed:
        text += ". MP4 conversion failed."
    return text


def _multipart(fields, file_field: str, file_path: str) -> Tuple[bytes, str]:
    """Encode text fields and one file as multipart/form-data; return (body, content type)."""
    boundary = "pancake-" + uuid.uuid4().hex
    parts = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    filename = os.path.basename(file_path).replace('"', "")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{filename}"\r\nContent-Type: video/mp4\r\n\r\n'.encode()
    )
    with open(file_path, "rb") as f:
        parts.append(f.read())
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class TelegramTarget:
    """One ``--notify-telegram bot_token chat_id``; used by its notify thread only."""

    def __init__(self, token: str, chat_id: str, api_url: str = DEFAULT_API_URL):
        self.token = token
        self.chat_id = chat_id
        self.api_url = api_url.rstrip("/")

    @property
    def key(self) -> str:
        """Identity in the state file: the chat and a digest of the token, never the token."""
        digest = hashlib.sha256(self.token.encode()).hexdigest()[:12]
        return f"telegram:{self.chat_id}:{digest}"

    def __str__(self) -> str:
        return f"telegram chat {self.chat_id}"

    def send_message(self, text: str) -> None:
        body = urllib.parse.urlencode({"chat_id": self.chat_id, "text": text}).encode()
        self._post("sendMessage", body, "application/x-www-form-urlencoded", REQUEST_TIMEOUT)

    def send_video(self, path: str, caption: str) -> None:
        body, content_type = _multipart(
            [("chat_id", self.chat_id), ("caption", caption)], "video", path
        )
        timeout = REQUEST_TIMEOUT + len(body) / 50e3
        self._post("sendVideo", body, content_type, timeout)

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "<token>") if self.token else text

    def _post(self, method: str, body: bytes, content_type: str, timeout: float) -> None:
        url = f"{self.api_url}/bot{self.token}/{method}"
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            raise self._error_from_http(method, e) from None
        except (OSError, ValueError) as e:
            raise NotifyError(self._scrub(f"{method}: {e}")) from None
        reply = _parse_reply(payload)
        if reply is not None and reply.get("ok") is False:
            raise NotifyError(
                self._scrub(f"{method}: {reply.get('description', 'not ok')}"), permanent=True
            )

    def _error_from_http(self, method: str, e: urllib.error.HTTPError) -> NotifyError:
        try:
            reply = _parse_reply(e.read()) or {}
        except OSError:
            reply = {}
        description = self._scrub(str(reply.get("description") or e.reason))
        if e.code == 429:
            retry_after = _retry_after(reply, e.headers.get("Retry-After") if e.headers else None)
            return NotifyError(f"{method}: HTTP 429 {description}", retry_after=retry_after or 1.0)
        # 4xx other than 429: the request itself is wrong (token, chat, file): no retry.
        permanent = 400 <= e.code < 500
        return NotifyError(f"{method}: HTTP {e.code} {description}", permanent=permanent)


def _parse_reply(payload: bytes) -> Optional[dict]:
    try:
        reply = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return reply if isinstance(reply, dict) else None


def _retry_after(reply: dict, header: Optional[str]) -> float:
    params = reply.get("parameters")
    value = params.get("retry_after") if isinstance(params, dict) else None
    if value is None:
        value = header
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0

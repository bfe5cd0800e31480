"""``postproc.py``: the command line of the post-processor.

Parses and checks every flag (one clear line per mistake), configures logging,
then hands a ``Settings`` to the daemon. Nothing happens at import time.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import re
import sqlite3
from typing import List, Optional, Sequence

from ..exc import ConfigError
from ..messages import has_control_character, is_path_address
from ..sdnotify import Notifier
from ..terminal import ArgumentParser, configure_logging, positive_float, positive_int, program_name
from . import convert, mqtt, secrets
from .daemon import Daemon, Settings
from .notify import DEFAULT_API_URL, TelegramTarget
from .recordings import RecordingRules
from .upload import Destination, FtpDestination, ScpDestination
from .workers import RetryPolicy

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=program_name("postproc.py"), description="Post-process what pancake.py records."
    )
    p.add_argument(
        "socket_name",
        help="address of unix domain socket, in abstract namespace; a name with a slash"
        " is a socket file instead, in a directory only this user may enter",
    )
    p.add_argument(
        "--convert",
        nargs=2,
        metavar=("mp4_dir", "fps"),
        required=True,
        help="convert h264 files into mp4_dir, at framerate fps",
    )
    p.add_argument(
        "--h264-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="take recordings only from DIR, where pancake.py records (may be repeated)",
    )
    p.add_argument(
        "--converter",
        choices=convert.CONVERTER_CHOICES,
        default="auto",
        help="auto: MP4Box if on PATH, else ffmpeg, else a built-in PyAV remux (default: auto)",
    )
    p.add_argument(
        "--upload-after-convert",
        type=positive_int,
        metavar="N",
        help="trigger upload after N conversions",
    )
    p.add_argument(
        "--upload-minutes",
        type=_minute,
        nargs="+",
        metavar="{0..59}",
        help="trigger upload at minutes",
    )
    p.add_argument(
        "--upload-scp",
        nargs=3,
        action="append",
        default=[],
        metavar=("user@host", "port", "remote_dir"),
        help="better set up SSH key-based authentication",
    )
    p.add_argument(
        "--ssh-config",
        metavar="FILE",
        help="ssh client configuration passed to ssh and scp as -F FILE",
    )
    p.add_argument(
        "--upload-ftp",
        nargs=5,
        action="append",
        default=[],
        metavar=("host", "port", "user", "password", "remote_dir"),
        help="require ncftpput; password may be file:PATH or credential:NAME",
    )
    p.add_argument("--upload-queue-size", type=positive_int, default=8, metavar="8")
    p.add_argument(
        "--upload-attempts",
        type=positive_int,
        default=RetryPolicy.attempts,
        metavar="N",
        help="give a file up after N failed uploads while others went through"
        f" (default: {RetryPolicy.attempts})",
    )
    p.add_argument(
        "--upload-retry",
        type=positive_float,
        default=RetryPolicy.first_delay,
        metavar="SECONDS",
        help="first wait before retrying a failed upload; doubles each time"
        f" (default: {RetryPolicy.first_delay:.0f})",
    )
    p.add_argument(
        "--notify-telegram",
        nargs=2,
        action="append",
        default=[],
        metavar=("bot_token", "chat_id"),
        help="use Telegram Bot API to notify chat_id of detection status;"
        " bot_token may be file:PATH or credential:NAME",
    )
    p.add_argument("--notify-queue-size", type=positive_int, default=8, metavar="8")
    p.add_argument(
        "--telegram-api-url",
        default=DEFAULT_API_URL,
        metavar="URL",
        help=f"Bot API server (default: {DEFAULT_API_URL})",
    )
    p.add_argument(
        "--state",
        metavar="FILE",
        help="SQLite file keeping accepted work across restarts"
        " (default: $STATE_DIRECTORY or ~/.local/state/raspberry-pancake,"
        " file postproc-<socket_name>.sqlite)",
    )
    p.add_argument("--log", metavar="path")
    mqtt.add_arguments(p)
    return p


def _minute(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a minute (0..59)") from None
    if not 0 <= value <= 59:
        raise argparse.ArgumentTypeError(f"{text!r} is not a minute (0..59)")
    return value


def _port(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise ConfigError(f"{flag}: port {text!r} is not a number from 1 to 65535")
    return value


def _existing_dir(flag: str, path: str) -> str:
    if not os.path.isdir(path):
        raise ConfigError(f"{flag}: directory {path!r} does not exist")
    return path


def default_state_path(socket_name: str, environ=None) -> str:
    """Per socket name, outside mp4_dir (cleanup scripts prune that one).

    A socket path counts by its last component, so ``ppp`` and
    ``/run/raspberry-pancake/ppp`` share the state file ``postproc-ppp.sqlite``.
    """
    env = os.environ if environ is None else environ
    base = env.get("STATE_DIRECTORY", "").split(":")[0]
    if not base:
        xdg = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        base = os.path.join(xdg, "raspberry-pancake")
    if is_path_address(socket_name):
        socket_name = os.path.basename(socket_name)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", socket_name)
    return os.path.join(base, f"postproc-{safe}.sqlite")


def _plain(flag: str, what: str, text: str) -> str:
    """``text`` unless it holds a control character (a CR or LF would end an FTP command)."""
    if has_control_character(text):
        raise ConfigError(f"{flag}: {what} {text!r} contains a control character")
    return text


def _destinations(args) -> List[Destination]:
    found: List[Destination] = []
    if args.ssh_config is not None and not os.path.isfile(args.ssh_config):
        raise ConfigError(f"--ssh-config: file {args.ssh_config!r} does not exist")
    for user_host, port, remote_dir in args.upload_scp:
        if not user_host or user_host.startswith("-") or has_control_character(user_host):
            raise ConfigError(f"--upload-scp: {user_host!r} is not user@host")
        _plain("--upload-scp", "remote_dir", remote_dir)
        found.append(
            ScpDestination(user_host, _port("--upload-scp", port), remote_dir, args.ssh_config)
        )
    for host, port, user, password, remote_dir in args.upload_ftp:
        if not host or host.startswith("-") or has_control_character(host):
            raise ConfigError(f"--upload-ftp: {host!r} is not a host name")
        _plain("--upload-ftp", "user", user)
        _plain("--upload-ftp", "remote_dir", remote_dir)
        password = secrets.resolve("--upload-ftp password", password)
        found.append(FtpDestination(host, _port("--upload-ftp", port), user, password, remote_dir))
    keys = [d.key for d in found]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"upload destination given twice: {duplicates[0]}")
    return found


def settings_from_args(args) -> Settings:
    """Check the parsed flags together; raise ``ConfigError`` for the first mistake."""
    if not args.socket_name:
        raise ConfigError("socket_name must not be empty")
    if is_path_address(args.socket_name) and args.socket_name.endswith("/"):
        raise ConfigError(f"socket_name {args.socket_name!r} names a directory, not a socket")
    rules = RecordingRules(args.h264_dir)
    mp4_dir, fps_text = args.convert
    _existing_dir("--convert", mp4_dir)
    if not os.access(mp4_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--convert: directory {mp4_dir!r} is not writable")
    try:
        fps = positive_float(fps_text)
    except argparse.ArgumentTypeError as e:
        raise ConfigError(f"--convert: fps {e}") from None
    minutes = args.upload_minutes or []
    repeated = sorted({m for m in minutes if minutes.count(m) > 1})
    if repeated:
        raise ConfigError(f"--upload-minutes: minute {repeated[0]} is given more than once")
    destinations = _destinations(args)
    has_trigger = bool(args.upload_after_convert or minutes)
    if destinations and not has_trigger:
        raise ConfigError(
            "--upload-scp/--upload-ftp need a trigger: --upload-after-convert or --upload-minutes"
        )
    if has_trigger and not destinations:
        raise ConfigError(
            "--upload-after-convert/--upload-minutes need a destination:"
            " --upload-scp or --upload-ftp"
        )
    if not re.match(r"^https?://[^/]", args.telegram_api_url):
        raise ConfigError(f"--telegram-api-url: {args.telegram_api_url!r} is not an http(s) URL")
    targets = []
    for token, chat_id in args.notify_telegram:
        if not token or not chat_id:
            raise ConfigError("--notify-telegram: bot_token and chat_id must not be empty")
        token = secrets.resolve("--notify-telegram bot_token", token)
        _plain("--notify-telegram", "chat_id", chat_id)
        targets.append(TelegramTarget(token, chat_id, args.telegram_api_url))
    if args.state:
        state_path = args.state
        _existing_dir("--state", os.path.dirname(os.path.abspath(state_path)))
    else:
        state_path = default_state_path(args.socket_name)
        try:
            os.makedirs(os.path.dirname(state_path), exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create {os.path.dirname(state_path)!r} ({e.strerror}); use --state FILE"
            ) from None
    if args.log:
        _existing_dir("--log", os.path.dirname(os.path.abspath(args.log)))
    return Settings(
        socket_name=args.socket_name,
        mp4_dir=os.path.abspath(mp4_dir),
        rate=convert.frame_rate(fps),
        converter=convert.select_converter(args.converter),
        state_path=state_path,
        upload_after_convert=args.upload_after_convert,
        upload_minutes=minutes,
        destinations=destinations,
        upload_queue_size=args.upload_queue_size,
        upload_retry=RetryPolicy(attempts=args.upload_attempts, first_delay=args.upload_retry),
        targets=targets,
        notify_queue_size=args.notify_queue_size,
        rules=rules,
        mqtt=mqtt.settings_from_args(args),
    )


def _log_handler(path: Optional[str]) -> Optional[logging.Handler]:
    if not path:
        return None  # stdout
    try:
        return logging.handlers.TimedRotatingFileHandler(path, when="midnight", backupCount=33)
    except OSError as e:
        raise ConfigError(f"--log: cannot open {path!r}: {e.strerror}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    configure_logging(handler=_log_handler(args.log))
    logger.info(
        "converting into %s at %s fps with %s; state in %s",
        settings.mp4_dir,
        settings.rate,
        settings.converter.name,
        settings.state_path,
    )
    try:
        daemon = Daemon(settings, Notifier())
    except sqlite3.Error as e:
        raise ConfigError(f"--state: cannot use {settings.state_path!r}: {e}") from None
    return daemon.run()

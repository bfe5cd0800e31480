"""Placeholder until recording lands: refuses recording flags instead of ignoring them."""

from __future__ import annotations

from .exc import ConfigError


def build_pipeline(args, camera):
    if args.record_continuous or args.record_detection or args.detect or args.emit:
        raise ConfigError("recording, detection and --emit are not available yet")
    return None

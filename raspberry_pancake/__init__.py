"""Raspberry Pancake: a small, dependable CCTV toolkit for the Raspberry Pi camera."""

__version__ = "0.1.0"

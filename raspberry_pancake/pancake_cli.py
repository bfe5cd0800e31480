"""pancake.py's entry: the checked config, logging, then the service on asyncio."""

from __future__ import annotations

import asyncio
from typing import Optional, Sequence

from .config import PancakeConfig, parse_config
from .terminal import configure_logging


def main(argv: Optional[Sequence[str]] = None) -> int:
    config = parse_config(argv)
    configure_logging()
    return asyncio.run(_serve(config))


async def _serve(config: PancakeConfig) -> int:
    # tornado and the camera are imported only once the flags are good, and the
    # service is built inside the running loop, which tornado's parts bind to
    from .service import PancakeService

    return await PancakeService(config).run()

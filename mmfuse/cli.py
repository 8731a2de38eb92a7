"""What every tool in ``tools/`` shares: bad input is reported as one line on stderr with exit code 2.

A config typo, bad data, a missing or untrusted checkpoint is the user's to fix, not a bug, so the tools
print the message alone (it names the key, file, line or record). ``--debug`` on any tool, or
``MMFUSE_DEBUG=1``, shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from mmfuse.errors import ConfigError, DataError, MmfuseError, UnsafeCheckpoint

__all__ = ["run_tool"]

_KIND = ((ConfigError, "config error"), (DataError, "data error"), (UnsafeCheckpoint, "checkpoint error"))


def run_tool(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a tool's ``main(argv)``; an :class:`MmfuseError` or a missing file becomes one line and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MMFUSE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        return main(argv)
    except (MmfuseError, FileNotFoundError) as e:
        if debug:
            raise
        kind = next((k for cls, k in _KIND if isinstance(e, cls)), "error")
        message = " ".join(str(e).split()) if isinstance(e, MmfuseError) else str(e)
        print(f"{kind}: {message} (--debug for the traceback)", file=sys.stderr)
        return 2

"""What the command line's commands share, for the engine's lab/cli.py and the scenarios' own subcommands: reading
FILE or standard input (`read_input`), and the argparse value types and actions (`port`, `Once`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lab.errors import UsageError
from lab.files import MAX_INPUT, read_capped, read_file_capped
from lab.values import ascii_int

stdin_closed = False  # set by main(): standard input was closed (`<&-`) when the command started


def read_input(path: str | None) -> str:
    """FILE or standard input with every byte kept (text-mode stdin would turn CRLF into LF), at most MAX_INPUT
    bytes; a file that cannot be read, is too big or is not UTF-8 is a one-line usage error."""
    what = "standard input" if path in (None, "-") else str(path)
    try:
        if path in (None, "-"):
            if stdin_closed or sys.stdin is None:
                raise UsageError("standard input is closed (`<&-`): pass FILE, or pipe the input in")
            # A replaced sys.stdin (tests, embedding) may have no binary buffer.
            if hasattr(sys.stdin, "buffer"):
                raw = read_capped(sys.stdin.buffer, what)
            else:
                raw = sys.stdin.read(MAX_INPUT + 1).encode("utf-8")
                if len(raw) > MAX_INPUT:
                    raise UsageError(f"{what} is larger than {MAX_INPUT // (1024 * 1024)} MiB")
        else:
            raw = read_file_capped(path)
        return raw.decode("utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {what}: {err.strerror or err}; check the path and its permissions") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} is not UTF-8 text ({err.reason} at byte {err.start})") from err


def port(text: str) -> int:
    try:
        return ascii_int(text, "port", 1, 65535)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class Once(argparse.Action):
    """An option that may be given only once (a second --vip would silently replace the first)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given twice; give it once")
        setattr(namespace, self.dest, values)

"""A Python file read from disk as Python reads a module (`read_module`).

The bytes are decoded with the encoding a coding line (PEP 263) or a UTF-8 byte-order
mark names, else as UTF-8, and line ends become `\\n`, as an editor sends a buffer:
a latin-1 module of a user's project is read, not skipped, and a file saved with a
byte-order mark parses. Used for the file `cascode complete` is given, the project
modules carried into the sandbox, and the test files that give examples.
"""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

from ..errors import ContextError
from .scanner import unix_lines


class SourceError(ContextError):
    """A Python file that cannot be read or decoded: `name` says which, `reason` why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def read_module(path: str | Path) -> str:
    """The text of the Python file at `path`; a SourceError naming the file when it
    cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SourceError(str(path), f"cannot read: {e.strerror or e}") from None
    return decode_module(data, str(path))


def decode_module(data: bytes, name: str) -> str:
    """`data` decoded as Python decodes a module's source, line ends as `\\n`; a
    SourceError naming `name` when it does not decode."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, LookupError) as e:
        raise SourceError(name, str(getattr(e, "msg", None) or e)) from None
    except UnicodeDecodeError as e:
        raise SourceError(name, f"byte {e.start} is not {e.encoding} text (a coding line, "
                          "PEP 263, names a file's other encoding)") from None
    # As io's universal newlines give it to Python, and as an editor sends it.
    return unix_lines(text.removeprefix("\ufeff"))

"""Names made safe to print or to store as text (ground floor: no pgvision imports).

* :func:`display` is what every message that prints a path or a name uses: control
  characters and undecodable bytes are escaped, so a file name cannot drive the terminal.
* :func:`name_text` turns a file or folder name into valid text (a label, an identity
  name), the same text for the same name at every run.
"""

from __future__ import annotations

import os
import unicodedata


def display(path: str | os.PathLike | bytes | None) -> str:
    """``path`` made safe to print: control, format and undecodable characters escaped.

    Undecodable bytes (which Python holds as lone surrogates, PEP 383) become ``\\xNN``;
    C0/C1 controls, DEL, and other non-printing code points (Unicode categories ``C*``,
    e.g. a bidirectional override) become ``\\xNN`` / ``\\uNNNN``; a backslash stays as is.
    """
    if path is None:
        return "None"
    if isinstance(path, bytes):
        text = os.fsdecode(path)
    else:
        text = os.fspath(path)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(ch).startswith("C"):
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def name_text(name: str) -> str:
    """A file or folder name as valid text (for a label or an identity name).

    A name that is valid UTF-8 is returned unchanged; each byte that is not (a Latin-1
    folder name, say) is written ``\\xNN`` (Python's ``backslashreplace``), so
    ``caf\\xe9`` for the Latin-1 bytes of ``café``. The same name always gives the same
    text, so a rerun finds the same label. The lossless form is the file URI.
    """
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")

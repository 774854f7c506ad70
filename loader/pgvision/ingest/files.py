"""Files on disk, taken as hostile: find them, check them, read them, name them.

Nothing here needs Pillow or torch (the core install reads vectors files through it).

* :func:`find_files` walks folders without ever aborting on what it meets: a symbolic link
  loop, a broken link, a FIFO, a device or a link to one, an oversized file are each
  skipped with a reason (:data:`FILE_SKIP_REASONS`), reported through ``on_skip``.
* :func:`read_file` / :func:`sha256_file` read **regular files only**, at most
  :func:`max_file_bytes` bytes, opening with ``O_NONBLOCK`` and checking the opened file
  descriptor (``fstat``), so a file swapped for a FIFO after it was found cannot hang a
  reader either.
* :func:`file_uri` stores a name losslessly: a file URI is percent-encoded bytes (RFC
  8089), so any byte string a POSIX file name can hold round-trips, UTF-8 or not (a name
  used as text, a label or an identity, goes through :func:`pgvision.text.name_text`).
* Every message that prints a path uses :func:`pgvision.text.display`, so a file name
  cannot drive the terminal.

The size limit is :data:`DEFAULT_MAX_FILE_BYTES` (256 MiB), changed with the environment
variable :data:`MAX_FILE_BYTES_ENV` (``PGVISION_MAX_FILE_BYTES``, a number of bytes).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote_from_bytes

from pgvision.errors import PathNotFound, PgvisionError
from pgvision.text import display

#: Largest file read, in bytes (256 MiB: far above any photo; a 24-bit 89-megapixel
#: uncompressed bitmap, Pillow's pixel limit, is 256 MiB).
DEFAULT_MAX_FILE_BYTES: int = 256 * 1024 * 1024

#: Environment variable that overrides :data:`DEFAULT_MAX_FILE_BYTES` (bytes, an integer >= 1).
MAX_FILE_BYTES_ENV: str = "PGVISION_MAX_FILE_BYTES"

#: Reasons a file is skipped before any decoder sees it.
FILE_SKIP_REASONS: tuple[str, ...] = (
    "broken-link",
    "symlink-loop",
    "not-a-regular-file",
    "too-large",
    "unreadable",
)

#: Every reason a file is skipped, in the order summaries print them: the image decoder's
#: (:func:`pgvision.ingest.images.decode_image`), then the file checks'.
SKIP_REASONS: tuple[str, ...] = ("empty", "not-an-image", "truncated", "decompression-bomb") + FILE_SKIP_REASONS

OnSkip = Callable[[str, str, str], None]


class FileSkipped(PgvisionError):
    """A file that cannot be used; ``reason`` is a short machine-readable word.

    Attributes:
        reason: one of :data:`SKIP_REASONS` (``too-large``, ``truncated``, ...).
        detail: what the check or the decoder said, for the per-file report.
        path: the file, when known (``str(exc)`` then starts with its :func:`pgvision.text.display` form).
    """

    def __init__(self, reason: str, detail: str = "", path: str | os.PathLike | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.path = None if path is None else os.fspath(path)
        text = f"{reason}: {detail}" if detail else reason
        super().__init__(f"{display(self.path)}: {text}" if self.path is not None else text)

    def with_path(self, path: str | os.PathLike) -> "FileSkipped":
        """The same skip, naming ``path`` (for a reason found on bytes, e.g. by the decoder)."""
        return type(self)(self.reason, self.detail, path)


class BadLimit(PgvisionError):
    """``PGVISION_MAX_FILE_BYTES`` is not a positive integer."""


class NoFilesFound(PgvisionError):
    """No file to load under the paths given (an empty folder, a typo, wrong extensions)."""

    @classmethod
    def under(
        cls, paths: Iterable[str | os.PathLike], extensions: Iterable[str], skipped: dict | None = None
    ) -> "NoFilesFound":
        """The error for ``paths``, naming them, the extensions looked for and what was skipped."""
        where = ", ".join(display(p) for p in paths)
        text = f"no image files found under {where} (looked for {', '.join(sorted(extensions))}"
        if skipped:
            text += "; skipped " + ", ".join(f"{n} {r}" for r, n in skipped.items())
        return cls(text + "): check the path, or name the files themselves")


def max_file_bytes() -> int:
    """The size limit in bytes: ``$PGVISION_MAX_FILE_BYTES`` or :data:`DEFAULT_MAX_FILE_BYTES`.

    Raises:
        BadLimit: the variable is set to something other than a positive integer.
    """
    raw = os.environ.get(MAX_FILE_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FILE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadLimit(
            f"{MAX_FILE_BYTES_ENV}={raw!r} is not a size in bytes: set it to a positive integer "
            f"(e.g. {DEFAULT_MAX_FILE_BYTES}) or unset it"
        )
    return value


def file_uri(path: str | os.PathLike) -> str:
    """``file://`` URI of the absolute ``path``, every byte kept (percent-encoded, RFC 8089).

    ``urllib.parse.unquote_to_bytes(uri[7:])`` gives back the path's bytes exactly, UTF-8
    or not.
    """
    return "file://" + quote_from_bytes(os.fsencode(os.path.abspath(path)), safe="/")


def _skip_for_oserror(exc: OSError, path: str | os.PathLike) -> FileSkipped:
    if exc.errno == errno.ELOOP:
        return FileSkipped("symlink-loop", "a symbolic link loop: it leads back to itself", path)
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return FileSkipped("broken-link", f"the link's target {display(os.readlink(path))} does not exist", path)
    return FileSkipped("unreadable", exc.strerror or str(exc), path)


def _check_stat(st: os.stat_result, path: str | os.PathLike, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a folder" if stat.S_ISDIR(st.st_mode) else "not a file")
        raise FileSkipped("not-a-regular-file", f"{kind}; only regular files are read", path)
    if st.st_size > limit:
        raise FileSkipped(
            "too-large",
            f"{st.st_size} bytes is over the limit of {limit} bytes (raise it with {MAX_FILE_BYTES_ENV})",
            path,
        )


def check_file(path: str | os.PathLike, max_bytes: int | None = None) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed) if it is a readable-looking regular file.

    Raises:
        FileSkipped: ``symlink-loop``, ``broken-link``, ``not-a-regular-file`` (FIFO,
            device, socket, folder), ``too-large`` (over ``max_bytes``, default
            :func:`max_file_bytes`), ``unreadable`` (any other ``OSError``).
    """
    limit = max_file_bytes() if max_bytes is None else max_bytes
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _skip_for_oserror(exc, path) from None
    _check_stat(st, path, limit)
    return st


def _open_regular(path: str | os.PathLike, max_bytes: int | None):
    """A binary file object on ``path``, checked on the open descriptor (never blocks).

    Checked twice: by ``stat`` before opening (opening some devices has effects of its
    own, e.g. a watchdog), and by ``fstat`` on what was opened (the name may have been
    swapped for a FIFO in between; ``O_NONBLOCK`` keeps that open from waiting).
    """
    limit = max_file_bytes() if max_bytes is None else max_bytes
    check_file(path, limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise _skip_for_oserror(exc, path) from None
    try:
        _check_stat(os.fstat(fd), path, limit)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), limit


def read_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes.

    Args:
        path: the file (links followed).
        max_bytes: size limit in bytes [default: :func:`max_file_bytes`].

    Raises:
        FileSkipped: see :func:`check_file`; also ``too-large`` when the file grows past
            the limit while being read.
    """
    fh, limit = _open_regular(path, max_bytes)
    with fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise _skip_for_oserror(exc, path) from None
    if len(data) > limit:
        raise FileSkipped(
            "too-large", f"more than the limit of {limit} bytes (raise it with {MAX_FILE_BYTES_ENV})", path
        )
    return data


def sha256_bytes(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes) of ``data``."""
    return hashlib.sha256(data).digest()


def sha256_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """SHA-256 digest (32 bytes) of a regular file's bytes, read in chunks.

    Raises:
        FileSkipped: see :func:`check_file`.
    """
    fh, _ = _open_regular(path, max_bytes)
    with fh:
        try:
            return hashlib.file_digest(fh, "sha256").digest()
        except OSError as exc:
            raise _skip_for_oserror(exc, path) from None


def find_files(
    paths: Iterable[str | os.PathLike],
    extensions: Iterable[str],
    limit: int | None = None,
    on_skip: OnSkip | None = None,
) -> list[Path]:
    """Regular files under ``paths`` with one of ``extensions``, recursively, sorted, unique.

    Args:
        paths: files and folders. A file is taken whatever its extension (the user named
            it); folders are walked (``os.walk``, links to folders not followed) for
            ``extensions`` (lower case with the dot, matched case-insensitively), hidden
            entries (names starting with ``.``) skipped, links to files followed.
        extensions: e.g. ``{".jpg", ".png"}``.
        limit: keep only the first ``limit`` files (``None``: all); skipped entries do not count.
        on_skip: called with ``(path, reason, detail)`` for each entry that is not taken
            (reasons :data:`FILE_SKIP_REASONS`; a folder that cannot be listed is
            ``unreadable``); never raised.

    Returns:
        Absolute paths (links resolved), sorted by their string form within each
        argument, in argument order.

    Raises:
        FileNotFoundError: a path given does not exist (message names it, escaped).
    """
    exts = frozenset(e.lower() for e in extensions)
    limit_bytes = max_file_bytes()
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw).expanduser()
        if not os.path.lexists(root):
            raise PathNotFound(f"no such file or folder: {display(raw)}")
        candidates = _walk_folder(root, exts, on_skip) if root.is_dir() else [root]
        for path in candidates:
            resolved = _checked_path(path, limit_bytes, on_skip)
            if resolved is None or resolved in seen:
                continue
            seen.add(resolved)
            found.append(resolved)
            if limit is not None and len(found) >= limit:
                return found
    return found


def _walk_folder(root: Path, exts: frozenset[str], on_skip: OnSkip | None) -> list[Path]:
    """Files under ``root`` with one of ``exts``, hidden entries skipped, sorted by path string."""

    def unreadable_folder(exc: OSError) -> None:
        if on_skip:
            on_skip(exc.filename or str(root), "unreadable", exc.strerror or str(exc))

    candidates = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                candidates.append(Path(dirpath, name))
    candidates.sort(key=lambda p: str(p))
    return candidates


def _checked_path(path: Path, limit_bytes: int, on_skip: OnSkip | None) -> Path | None:
    """``path`` with links resolved, or None (``on_skip`` told why) when it cannot be taken."""
    try:
        check_file(path, limit_bytes)
        return Path(os.path.realpath(path))
    except FileSkipped as exc:
        if on_skip:
            on_skip(str(path), exc.reason, exc.detail)
    except (OSError, RuntimeError) as exc:  # realpath of a link changed meanwhile
        if on_skip:
            on_skip(str(path), "unreadable", str(exc))
    return None

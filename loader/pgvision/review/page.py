"""One self-contained HTML page of thumbnails (no file beside it, no script, no network).

Every thumbnail is a JPEG made with Pillow and written inline as a base64 ``data:`` URI;
every text (title, captions, reasons) is HTML-escaped with :func:`html.escape`. A photo
that no longer exists, is not a regular file, is over the loader's size or pixel limits,
or cannot be decoded shows a grey placeholder image with the reason as its caption, never
a broken image.

Example::

    from pgvision.review.page import Section, Thumb, write_page

    write_page("dups.html", "Duplicates", [
        Section("group 1", [Thumb("/photos/a.jpg", "a.jpg (keeper)", marked=True),
                            Thumb("file:///photos/a-small.jpg", "a-small.jpg 0.02")]),
    ])
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

from pgvision.errors import InvalidValue
from pgvision.ingest.files import FileSkipped, display, read_file
from pgvision.ingest.images import decode_image

__all__ = ["PageCounts", "Section", "Thumb", "path_of", "thumbnail_uri", "write_page"]

#: JPEG quality of the inline thumbnails (Pillow's scale 1-95; 85 keeps faces legible at
#: about 6-10 KB per 160 px thumbnail).
THUMB_JPEG_QUALITY: int = 85


@dataclass(frozen=True)
class Thumb:
    """One photo on a page.

    Attributes:
        path: a file path, a ``file://`` URI (percent-encoded bytes, as the loader stores
            them), or None for an image whose file is unknown (shown as a placeholder).
        caption: text under the thumbnail (escaped; may hold several lines).
        box: ``(left, top, right, bottom)`` in pixels of the upright full-resolution image,
            the part to show (a face); None: the whole photo.
        marked: drawn with a thick outline (e.g. the keeper of a duplicate group).
    """

    path: str | Path | None
    caption: str
    box: tuple[int, int, int, int] | None = None
    marked: bool = False


@dataclass(frozen=True)
class Section:
    """A titled row of thumbnails (a duplicate group, a query's results, a person)."""

    title: str
    thumbs: list[Thumb]


@dataclass(frozen=True)
class PageCounts:
    """What :func:`write_page` wrote.

    Attributes:
        path: the HTML file.
        sections: number of sections.
        thumbs: number of thumbnails, placeholders included.
        placeholders: thumbnails shown as a placeholder.
        problems: ``(path as printed, reason)`` for each placeholder.
        bytes: size of the file in bytes.
    """

    path: Path
    sections: int
    thumbs: int
    placeholders: int
    problems: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0


def path_of(location: str | os.PathLike) -> str:
    """The file system path of ``location``: a ``file://`` URI decoded byte for byte
    (RFC 8089, as :func:`pgvision.ingest.files.file_uri` writes it), else the path itself."""
    text = os.fspath(location)
    if isinstance(text, str) and text.startswith("file://"):
        return os.fsdecode(unquote_to_bytes(text[len("file://"):]))
    return text


def thumbnail_uri(location: str | os.PathLike, size: int, box: tuple[int, int, int, int] | None = None) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the photo at ``location``, its longer side
    at most ``size`` px.

    Args:
        location: a path or ``file://`` URI (see :func:`path_of`).
        size: the longest side of the thumbnail in pixels (>= 1).
        box: ``(left, top, right, bottom)`` in full-resolution upright pixels to crop
            first; clipped to the image.

    Raises:
        FileSkipped: the file is missing, not a regular file, too large, or not a
            decodable image (``reason`` says which; see :func:`pgvision.ingest.images.decode_image`).
    """
    path = path_of(location)
    data = read_file(path)
    try:
        decoded = decode_image(data, draft_size=None if box else size)
    except FileSkipped as exc:
        raise exc.with_path(path) from None
    image = decoded.image
    if box is not None:
        scale = image.width / decoded.width
        left, top, right, bottom = (round(v * scale) for v in box)
        left, top = max(0, left), max(0, top)
        right, bottom = min(image.width, right), min(image.height, bottom)
        if right <= left or bottom <= top:
            raise FileSkipped("unreadable", f"box {box} lies outside the {decoded.width}x{decoded.height} image", path)
        image = image.crop((left, top, right, bottom))
    image = image.copy()
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMB_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _placeholder_uri(size: int) -> str:
    """A grey square SVG with a crossed frame, ``size`` px wide (renders in any browser)."""
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 100 100">'
        '<rect width="100" height="100" fill="#ddd"/>'
        '<path d="M10 10L90 90M90 10L10 90" stroke="#999" stroke-width="3"/></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("ascii")).decode("ascii")


_STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
h1{font-size:1.3em} h2{font-size:1.05em;margin:1.2em 0 .4em}
.row{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;padding:4px;border:3px solid transparent;background:#fff;width:%(w)dpx}
figure.marked{border-color:#1a7f37}
figure.placeholder figcaption{color:#a40e26}
img{display:block;max-width:%(size)dpx;max-height:%(size)dpx;margin:auto}
figcaption{font-size:.8em;white-space:pre-wrap;overflow-wrap:anywhere;margin-top:3px}
"""


def _figure(thumb: Thumb, size: int, problems: list[tuple[str, str]]) -> str:
    reason = None
    if thumb.path is None:
        reason = "no file for this image"
    else:
        try:
            src = thumbnail_uri(thumb.path, size, thumb.box)
        except FileSkipped as exc:
            reason = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
    classes = ["marked"] if thumb.marked else []
    caption = thumb.caption
    if reason is not None:
        classes.append("placeholder")
        where = display(path_of(thumb.path)) if thumb.path is not None else "?"
        problems.append((where, reason))
        src = _placeholder_uri(size)
        caption = f"{caption}\n[not shown: {reason}]"
    cls = f' class="{" ".join(classes)}"' if classes else ""
    alt = html.escape(thumb.caption.splitlines()[0] if thumb.caption else "")
    return (f'<figure{cls}><img src="{src}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_page(path: str | os.PathLike, title: str, sections: list[Section], *, size: int = 160) -> PageCounts:
    """Write one self-contained HTML page of thumbnails.

    Args:
        path: the HTML file to write (replaced atomically: written beside it, then renamed).
        title: the page's title and heading (escaped).
        sections: rows of thumbnails, in order.
        size: longest side of each thumbnail in pixels (>= 16).

    Returns:
        :class:`PageCounts` (thumbnails, placeholders and why).

    Raises:
        pgvision.errors.InvalidValue (a ValueError): ``size`` below 16.
        OSError: the page cannot be written.
    """
    if size < 16:
        raise InvalidValue(f"thumbnail size {size} px is too small: give 16 px or more")
    problems: list[tuple[str, str]] = []
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE % {'size': size, 'w': size + 8}}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    count = 0
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2><div class=\"row\">")
        for thumb in section.thumbs:
            parts.append(_figure(thumb, size, problems))
            count += 1
        parts.append("</div></section>")
    parts.append("</body></html>\n")
    text = "\n".join(parts)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return PageCounts(target, len(sections), count, len(problems), problems, len(text.encode("utf-8")))

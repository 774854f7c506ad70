"""Pages of query results: duplicate groups side by side, search results in rank order.

Built on :mod:`pgvision.review.page` (one self-contained HTML file, thumbnails inline, a
placeholder saying why for a photo that is gone). The rows are those the SQL functions
return, as dicts (``pgvision.duplicate_hit`` for groups, ``pgvision.image_hit`` for
search results), so the pages need no database.

Example::

    from pgvision.review.results import duplicates_page
    duplicates_page("dups.html", rows, tier="same")
"""

from __future__ import annotations

import os
from collections import Counter

from pgvision.review.page import PageCounts, Section, Thumb, write_page

__all__ = ["duplicates_page", "search_page"]


def _size(row: dict) -> str:
    w, h = row.get("width"), row.get("height")
    return f"{w}x{h} px" if w and h else "size unknown"


def _name(uri: str | None) -> str:
    return uri.rsplit("/", 1)[-1] if uri else "?"


def duplicates_page(path: str | os.PathLike, rows: list[dict], *, tier: str, size: int = 160,
                    title: str | None = None) -> PageCounts:
    """One section per duplicate group, its keeper first and marked.

    Args:
        path: the HTML file to write.
        rows: ``pgvision.duplicate_groups`` / ``duplicates_of`` rows (dicts with ``group_id``,
            ``image_id``, ``uri``, ``label``, ``is_keeper``, ``distance``, ``hash_distance``,
            ``width``, ``height``), grouped by ``group_id`` as the functions return them.
        tier: ``same`` or ``similar`` (in the title).
        size: longest thumbnail side in pixels (>= 16).
        title: the page's title; default ``Duplicates (tier same): N groups, M images``.

    Returns:
        :class:`pgvision.review.page.PageCounts`.

    Raises:
        ValueError: ``size`` below 16.
        OSError: the page cannot be written.
    """
    members = Counter(row["group_id"] for row in rows)
    sections: list[Section] = []
    current = None
    for row in rows:
        if row["group_id"] != current:
            current = row["group_id"]
            sections.append(Section(f"group {current}: {members[current]} images", []))
        if row["is_keeper"]:
            caption = f"keeper: image {row['image_id']}\n{_name(row['uri'])}\n{_size(row)}"
        else:
            hash_text = f", hash {row['hash_distance']} bits" if row.get("hash_distance") is not None else ""
            caption = (f"image {row['image_id']}\n{_name(row['uri'])}\n{_size(row)}\n"
                       f"distance {row['distance']:.4f}{hash_text}")
        if row.get("label"):
            caption += f"\nlabel {row['label']}"
        sections[-1].thumbs.append(Thumb(row["uri"], caption, marked=bool(row["is_keeper"])))
    if title is None:
        title = f"Duplicates (tier {tier}): {len(sections)} groups, {len(rows)} images"
    return write_page(path, title, sections, size=size)


def search_page(path: str | os.PathLike, title: str, rows: list[dict], *, query: str | os.PathLike | None = None,
                query_caption: str = "query", size: int = 160) -> PageCounts:
    """Search results in rank order with their distances, after the query photo when given.

    Args:
        path: the HTML file to write.
        title: the page's title (e.g. ``Nearest to query.jpg (efficientnet-lite0)``).
        rows: ``search_images`` / ``similar_images`` rows (dicts with ``image_id``, ``uri``,
            ``label``, ``distance``, ``similarity``), nearest first.
        query: the probe photo's path or ``file://`` URI, shown first and marked; None: none.
        query_caption: its caption.
        size: longest thumbnail side in pixels (>= 16).

    Returns:
        :class:`pgvision.review.page.PageCounts`.

    Raises:
        ValueError: ``size`` below 16.
        OSError: the page cannot be written.
    """
    sections = []
    if query is not None:
        sections.append(Section("query", [Thumb(query, query_caption, marked=True)]))
    thumbs = []
    for rank, row in enumerate(rows, 1):
        caption = f"#{rank} image {row['image_id']}\n{_name(row['uri'])}\ndistance {row['distance']:.4f}"
        if row.get("label"):
            caption += f"\nlabel {row['label']}"
        thumbs.append(Thumb(row["uri"], caption))
    sections.append(Section(f"{len(rows)} results, nearest first" if rows else "no results", thumbs))
    return write_page(path, title, sections, size=size)

"""HTML review pages of people: every person's faces, or one person's, as thumbnails.

Thumbnails are cut from the photo by the stored face box (:mod:`pgvision.review.page`:
self-contained, no script, a placeholder with the reason for a photo that is gone).
"""

from __future__ import annotations

import os

from pgvision.people.verbs import Person, PersonFace
from pgvision.review.page import PageCounts, Section, Thumb, write_page


def person_title(person: Person) -> str:
    """``person 12: Ann (5 faces)`` or ``person 12: unnamed (5 faces)``."""
    return (
        f"person {person.identity_id}: {person.name if person.name is not None else 'unnamed'} ({person.faces} faces)"
    )


def write_people_page(
    path: str | os.PathLike, people: list[tuple[Person, list[PersonFace]]], title: str = "People", size: int = 112
) -> PageCounts:
    """One section per person with the thumbnails of its faces (hand-placed ones outlined).

    Args:
        path: the HTML file to write.
        people: each person with the faces to show (e.g. its first 12).
        title: the page title.
        size: thumbnail size in pixels (>= 16).
    """
    sections = []
    for person, faces in people:
        thumbs = [
            Thumb(
                f.uri,
                f"face {f.face_id}" + (" (hand)" if f.assigned_by == "hand" else ""),
                box=f.box,
                marked=f.assigned_by == "hand",
            )
            for f in faces
        ]
        shown = f"; {len(faces)} shown" if len(faces) < person.faces else ""
        sections.append(Section(person_title(person) + shown, thumbs))
    return write_page(path, title, sections, size=size)

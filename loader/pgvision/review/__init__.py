"""Review: static, self-contained HTML pages of photo thumbnails for people to look at.

- :mod:`pgvision.review.page`: :class:`~pgvision.review.page.Thumb` (a photo, its caption,
  an optional crop box, a mark such as "the keeper"), :class:`~pgvision.review.page.Section`
  (a titled row of thumbnails) and :func:`~pgvision.review.page.write_page`, which writes one
  HTML file with every thumbnail inline (base64 JPEG ``data:`` URIs), so the page can be
  mailed, archived or opened offline.

Used by the duplicate groups, search results and people review pages. Photos are read with
the loader's own limits (:func:`pgvision.ingest.files.read_file`,
:func:`pgvision.ingest.images.decode_image`); one that is gone or cannot be decoded shows a
placeholder saying why. Needs Pillow (the ``images`` extra).
"""

"""People: faces grouped into persons (named, or unnamed from clustering), and the verbs on them.

A person is a row of ``pgvision.identities`` whose ``name`` may be NULL. The work happens in
SQL (migration 0014: ``pgvision.cluster_start`` / ``cluster_step`` / ``cluster_faces`` and
``people_name``, ``people_merge``, ``people_move``, ``people_split``, ``people_ignore``,
each one transaction with a row in ``pgvision.people_audit``); this wing calls them:

* :mod:`~pgvision.people.cluster`: a clustering pass batch by batch (one transaction per
  batch, a progress bar, a rerun resumes the open pass);
* :mod:`~pgvision.people.verbs`: list, show, name, merge, move, split, ignore;
* :mod:`~pgvision.people.pages`: HTML pages of face thumbnails for a person or all of them
  (through :mod:`pgvision.review.page`);
* :mod:`~pgvision.people.scores`: pairwise and BCubed precision / recall of a clustering.

Rule, defaults and measurements: docs/people.md.
"""

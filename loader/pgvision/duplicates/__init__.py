"""Duplicates: the same picture stored more than once, and near-identical shots.

The work is in SQL (``pgvision.duplicate_groups``, ``pgvision.duplicates_of``; migration
0015): candidate pairs through the model's ANN index and equal pHashes (a B-tree), groups as
connected components, a keeper per group (most pixels, then oldest). This wing is the
Python side around it:

- :mod:`pgvision.duplicates.fill`: :func:`~pgvision.duplicates.fill.fill_hashes` computes the
  perceptual hashes (:mod:`pgvision.ingest.perceptual_hash`) of images stored before the
  loader computed them, or decoded on the GPU; resumable, one transaction per batch.
- :mod:`pgvision.duplicates.groups`: :func:`~pgvision.duplicates.groups.find_groups` and
  :func:`~pgvision.duplicates.groups.find_duplicates_of` call the SQL functions and return
  rows; :data:`~pgvision.duplicates.groups.TIERS` names the tiers.

Tiers (docs/duplicates.md): ``same`` = hash and embedding agree (re-encoded, resized,
cropped up to 10 %: safe to delete all but the keeper); ``similar`` = embedding only
(near-identical shots: review). Called by ``pgvision duplicates`` (:mod:`pgvision.cli.duplicates`).
"""

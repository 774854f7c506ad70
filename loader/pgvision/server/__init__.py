"""The database server: where it is and how it runs.

``connection`` resolves ``--database-url`` / ``DATABASE_URL`` (else the embedded server) and
turns libpq failures into one line; ``embedded`` runs the embedded PostgreSQL 18 + pgvector
server under the user's data directory; ``replicas`` adds hot-standby streaming replicas of
it; ``tuning`` sizes its settings to the machine; ``users`` creates least-privilege logins.
Imports only the ground floor (``errors``, ``registry``) and :mod:`pgvision.ingest.files`'s
display helper.
"""

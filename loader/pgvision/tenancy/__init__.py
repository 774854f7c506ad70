"""Collections (tenants): which collection a session writes into, and who may see which.

``collection`` resolves a collection's name to its id (creating it when the session may),
sets the session's ``pgvision.collection_id`` (the default of every ``collection_id``
column, so a load writes into that collection without naming it in each statement), and
grants collections to roles (``pgvision.collection_grants``, the key of the row-level
security policies). The policies themselves live in the database (migration 0017,
docs/collections.md). Ground floor: imports only :mod:`pgvision.errors` and psycopg.
"""

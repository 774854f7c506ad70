"""pgvision: image similarity search and face identification inside PostgreSQL + pgvector.

The database is the product: Alembic migrations create the schema ``pgvision`` and its
SQL API (``search_images``, ``similar_images``, ``identify``, ``identify_face``,
``recall_at_k``); this package loads embeddings into it and runs the embedded server.
"""

__version__ = "0.1.0"

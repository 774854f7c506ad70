"""A model's ANN index: its DDL (HNSW / IVFFlat, halfvec and binary quantization), the build
with progress from ``pg_stat_progress_create_index``, and the search setting chosen to reach
a target recall (``recall_target``). Imports the ground floor only.
"""

"""Getting rows in: files found and hashed, images decoded (CPU or GPU), vectors read from
``.npy`` / ``.fvecs`` files, row limits checked, and batches streamed with binary ``COPY``.

``files`` (find, hash, display, skip reasons), ``images`` and ``decoding`` (Pillow and
torchvision decode + preprocess), ``decode_gpu`` (nvJPEG), ``vector_files`` (vector files),
``row_limits`` (what one row may hold), ``pg_copy`` (binary COPY and the idempotent merge),
``writer`` (the background writer thread). Nothing here chooses a model or builds an index.
"""

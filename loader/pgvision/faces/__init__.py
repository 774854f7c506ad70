"""Faces: detect (dlib) -> align (5 landmarks) -> embed (dlib ResNet or FaceNet) -> store.

Stages, one module each, in data-flow order:

- :mod:`pgvision.faces.detect`: boxes, 5-point landmarks and detector scores (dlib HOG or CNN).
- :mod:`pgvision.faces.align`: face chips aligned on the 5 landmarks, at the model's input size.
- :mod:`pgvision.faces.embed`: the face models (``dlib`` 128-d L2, ``facenet`` 512-d cosine).
- :mod:`pgvision.faces.store`: faces and their embeddings into PostgreSQL by binary COPY.
- :mod:`pgvision.faces.decide`: the open-set decision rule (gallery + margin) and the
  one-identity-per-photo assignment.
- :mod:`pgvision.faces.enroll`, :mod:`~pgvision.faces.identify`,
  :mod:`~pgvision.faces.calibrate`, :mod:`~pgvision.evaluate_faces`: what the CLI calls.

dlib and torch are imported lazily: ``import pgvision.faces`` costs nothing.
"""

"""Offline builders of model directories in the real formats (random weights, fixed seeds).

Each builder is ``build(path: Path, seed: int) -> None`` and writes a complete directory
that the real loading code (FunASR ``AutoModel`` / transformers ``from_pretrained``) loads.
"""

"""Pipelines of models run by the data plane: Triton ensembles (`ensemble.py`)."""

"""Conveyor: a model-serving system and the laboratory that measures it against its peers."""

__version__ = "0.1.0"

"""Clarity: a memory server for coding agents, one embedded Qdrant shared by every session."""

__version__ = "0.2.0"

"""Hark's trainer: dataset synthesis, training, export and evaluation on the dev box."""

from .hookspecs import hookimpl

__all__ = ["hookimpl"]

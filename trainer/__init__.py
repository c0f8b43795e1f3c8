"""Hark's trainer: dataset synthesis, training, export and evaluation on the dev box."""

"""Pretraining backends: one file per method, loss variants and reference encoders."""

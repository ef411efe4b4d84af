"""Learned models (plain torch) and their inference backends."""

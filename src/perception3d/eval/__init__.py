"""Evaluation: detection, segmentation and occupancy scores."""

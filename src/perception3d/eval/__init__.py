"""Scoring against ground truth: detection (nuscenes-devkit), segmentation and occupancy (confusion-matrix IoU)."""

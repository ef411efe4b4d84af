"""Sweep-level training data from any nuScenes-schema dataroot (nuScenes, Lyft Level 5, the synthetic world).

Build once (`perception3d dataset build`, or `build_cache`), then read by index:

    from perception3d.train.data.dataset import SweepDataset, collate
    from perception3d.train.data.augment3d import Augment3DConfig, augment_sample

    data = SweepDataset("cache/")          # len(data) = LiDAR sweeps of the split; data.cameras, .classes, .attributes
    sample = data[i]                       # dict of numpy arrays (fields and frames: dataset.py)
    sample = augment_sample(sample, rng)   # points, boxes, camera transforms and images stay consistent
    batch = collate([data[i], data[j]])    # ragged fields concatenated with <group>_batch indices

Modules: layout (cache files, manifest, scene keys), scene_builder (one scene -> arrays), build (the whole split,
reusing unchanged scenes), boxes2d (simulated or bag 2D boxes), images (decoding at a scale), sweeps (past sweeps
into the current LiDAR frame), dataset (SweepDataset, collate), summary, augment3d.
"""

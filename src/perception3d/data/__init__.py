"""Data: the synthetic nuScenes-schema world (`synth`) and the nuScenes -> rosbag2 converter (`convert`)."""

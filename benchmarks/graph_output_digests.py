"""Whether a change leaves the geometric graph's output messages byte for byte the same (issue 18, acceptance 3).

Synthesizes a world v2 scene (once, into WORK), converts it to a rosbag2 with the `good` simulated 2D boxes, replays
detection3d, segmentation and occupancy on it and writes one SHA-256 digest per output topic over the serialized
messages in bag order (the topics that carry timings, diagnostics and latency, are left out). Run it in the old
and the new checkout with the same WORK and compare:

    PYTHONPATH=old/src .venv/bin/python benchmarks/graph_output_digests.py /tmp/digests old.json
    PYTHONPATH=new/src .venv/bin/python benchmarks/graph_output_digests.py /tmp/digests new.json --compare old.json

--compare prints each topic that differs (or is missing on one side) and exits with 1 when any does.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from perception3d.data.convert import convert
from perception3d.data.simulated_2d import PRESETS
from perception3d.data.synth import SynthConfig, synthesize
from perception3d.msgs.bag import BagReader
from perception3d.runtime.bag import replay
from perception3d.runtime.graph import FULL_GRAPH

NODES = ("detection3d", "segmentation", "occupancy")
TIMING_TOPICS = ("debug", "diagnostics", "latency")  # parts of topic names whose messages hold measured times


def scene_bag(work: Path, seconds: float, seed: int) -> Path:
    """The converted bag of the world v2 scene in work (synthesized and converted on the first call)."""
    bags = work / "bags"
    if not bags.exists():
        root = synthesize(work / "root", SynthConfig(scenes=1, seconds=seconds, seed=seed, world_version=2),
                          progress=False)
        convert(root, "v1.0-synth", bags, simulate_2d=PRESETS["good"], progress=False)
    [bag] = sorted(p for p in bags.iterdir() if p.is_dir())
    return bag


def output_digests(bag: Path, out: Path, processes: int = 1) -> dict[str, str]:
    """{topic: SHA-256 hex digest of its serialized messages in order} of the graph replayed on bag into out, in
    one process or (processes > 1) in worker processes (runtime.replay_processes)."""
    shutil.rmtree(out, ignore_errors=True)
    if processes > 1:
        from perception3d.runtime.replay_processes import replay_in_processes  # a checkout before it has none

        replay_in_processes(bag, out, FULL_GRAPH.select(NODES), processes, progress=False)
    else:
        replay(bag, out, FULL_GRAPH.select(NODES), progress=False)
    digests: dict = {}
    with BagReader(out) as reader:
        for message in reader.messages():
            if not any(part in message.topic for part in TIMING_TOPICS):
                digests.setdefault(message.topic, hashlib.sha256()).update(message.rawdata)
    return {topic: digest.hexdigest() for topic, digest in sorted(digests.items())}


def differing_topics(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(topic for topic in set(a) | set(b) if a.get(topic) != b.get(topic))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path, help="folder for the scene, its bag and the replay (reused)")
    parser.add_argument("out", type=Path, help="JSON file for the digests")
    parser.add_argument("--compare", type=Path, help="digests of another checkout to compare with")
    parser.add_argument("--seconds", type=float, default=4.0, help="scene length [s]")
    parser.add_argument("--seed", type=int, default=8, help="world seed (8: the world v2 scene of world_v2_scores)")
    parser.add_argument("--processes", type=int, default=1,
                        help="replay the graph's node groups in this many worker processes (default 1: one process)")
    args = parser.parse_args()
    digests = output_digests(scene_bag(args.work, args.seconds, args.seed), args.work / "replay", args.processes)
    args.out.write_text(json.dumps(digests, indent=1) + "\n")
    print(f"{len(digests)} topics -> {args.out}")
    if args.compare is None:
        return 0
    differ = differing_topics(json.loads(args.compare.read_text()), digests)
    for topic in differ:
        print(f"differs: {topic}")
    print("identical" if not differ else f"{len(differ)} topic(s) differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

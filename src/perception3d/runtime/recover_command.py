"""`perception3d recover BAG [--out OUT]`: rewrite a damaged or unfinished rosbag2 (MCAP) into a readable one.

What `ros2 bag reindex` does for a bag whose writer was killed, and more: the input is read record by record
(msgs.mcap_records: truncated files, overwritten regions, missing summary or metadata.yaml, chunk CRCs checked when
present), and every intact message is written, with its topic, type, recorded QoS and log time, into a new bag
that has its summary, index and metadata.yaml. The input is never modified. What was skipped, and where, is printed.
Exit codes: 0 written, 2 nothing readable (or an unusable path), 3 the output could not be written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="damaged or unfinished rosbag2 directory (MCAP)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output rosbag2 directory to create (default: BAG_recovered next to BAG)")
    parser.epilog = "exit codes: 0 written, 2 nothing readable, 3 output not writable"


def recover(bag: Path, out: Path) -> tuple[int, list[str]]:
    """Copy every readable message of `bag` into a new bag at `out`; returns (messages written, damage lines).

    Raises:
        BagError: no MCAP file in `bag`, or an existing `out`.
        BagWriteError: the output cannot be written.
    """
    from ..errors import BagError
    from ..msgs.bag import BagReader, BagWriter

    if not list(Path(bag).glob("*.mcap")):
        raise BagError(f"{bag}: no .mcap file to recover (sqlite3 bags are not supported)")
    with BagReader(bag, tolerant=True) as reader:
        damage = [str(d) for d in reader.damage]
        with BagWriter(out, custom_data={"perception3d.recovered_from": Path(bag).name}) as writer:
            for topic, msgtype in reader.topics.items():
                writer.add_topic(topic, msgtype, reader.qos_spec(topic))
            for message in reader.messages():
                writer.write_raw(message.topic, message.stamp_ns, message.rawdata)
            return writer.count, damage


def run(args: argparse.Namespace) -> int:
    from ..msgs.bag import interrupt_once

    out = args.out or args.bag.with_name(args.bag.name + "_recovered")
    with interrupt_once():
        count, damage = recover(args.bag, out)
    print(f"recovered {count} messages: {args.bag} -> {out}")
    for line in damage:
        print(f"  skipped: {line}")
    if not damage:
        print("  the input had no damage")
    if count == 0:
        print(f"perception3d recover: error: {args.bag}: no readable message", file=sys.stderr)
        return 2
    return 0

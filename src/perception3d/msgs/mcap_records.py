"""Record-level MCAP reading that survives damage (truncation, zeroed or overwritten bytes, a writer killed before
it wrote the summary).

An indexed reader trusts the summary at the end of the file; this one walks the records from the start, as the
`mcap` library's non-seeking reader does, and goes further where that reader stops:
- a chunk whose declared length runs past the end of the file (the writer was killed, or the file was cut) still
  gives the messages it holds up to the cut (uncompressed chunks);
- a record that does not parse is skipped by searching for the next plausible record: a chunk whose header fields
  agree with each other (lengths, compression name, start <= end), or inside a chunk a message whose length fits,
  whose channel is known and whose log time lies within the chunk's time range;
- a chunk whose CRC is present and wrong is skipped whole (its bytes cannot be trusted).
Every skip is recorded (byte offset, what, how many bytes), so a caller can say how much was lost and where.
Messages come out in file order (a rosbag2 writer writes them in log-time order). The file is memory-mapped and the
pages already walked are released as the walk goes on, so resident memory does not grow with the file's size. An
uncompressed chunk is read in place (a view of the mapping, not a copy) and only the payloads of the topics asked
for are copied out, so a pass over a few topics of a large bag (an index pass, the /tf pass) touches little more
than the record headers.
"""
from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
TOP_LEVEL_OPCODES = frozenset(range(0x01, 0x10))  # Header .. DataEnd (MCAP specification, version 0)
CHUNK_OPCODES = frozenset((OP_SCHEMA, OP_CHANNEL, OP_MESSAGE))
COMPRESSIONS = ("", "zstd", "lz4")
_CHUNK_FIXED = 8 + 8 + 8 + 4 + 4 + 8  # start, end, uncompressed size, crc, compression length, compressed size
_MESSAGE_FIXED = 2 + 4 + 8 + 8  # channel id, sequence, log time, publish time


@dataclass(frozen=True)
class McapChannel:
    """A channel: id, topic, message type (the schema name), message encoding and metadata."""

    id: int
    topic: str
    msgtype: str
    encoding: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class McapDamage:
    """One damaged region: byte offset in the file, what was wrong, and how many bytes were skipped."""

    offset: int
    problem: str
    skipped_bytes: int

    def __str__(self) -> str:
        return f"byte {self.offset}: {self.problem} ({self.skipped_bytes} bytes skipped)"


@dataclass
class McapWalk:
    """Walks one MCAP file; `messages()` yields (channel, log time [ns], CDR bytes) and fills `damage`."""

    path: Path
    channels: dict[int, McapChannel] = field(default_factory=dict)
    damage: list[McapDamage] = field(default_factory=list)
    complete: bool = False  # the footer and closing magic were reached
    orphan_messages: int = 0  # messages whose channel record was lost
    _released: int = 0  # mapped bytes already given back (see _release)
    _topics: set[str] | None = None  # whose payloads `messages` copies out (None: every topic)

    def messages(self, topics: set[str] | None = None) -> Iterator[tuple[McapChannel, int, bytes | None]]:
        """Every readable message in file order, with its CDR bytes when its topic is in `topics` (None: every
        topic) and None otherwise; damage found on the way is appended to `damage`."""
        self.channels.clear()
        self.damage.clear()
        self.complete, self.orphan_messages = False, 0
        with self.path.open("rb") as f:
            if f.seek(0, 2) == 0:
                self.damage.append(McapDamage(0, "empty file", 0))
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                self._released = 0
                self._topics = topics
                yield from self._walk(data)

    # -- top level ---------------------------------------------------------------------------------------------
    def _walk(self, data: mmap.mmap) -> Iterator[tuple[McapChannel, int, bytes | None]]:
        size = len(data)
        pos = len(MAGIC)
        if data[:len(MAGIC)] != MAGIC:
            pos = self._resync(data, 0, "no MCAP magic at the start")
        schemas: dict[int, str] = {}
        while pos < size:
            if size - pos < 9:
                self.damage.append(McapDamage(pos, "file ends inside a record header (truncated)", size - pos))
                return
            opcode = data[pos]
            (length,) = struct.unpack_from("<Q", data, pos + 1)
            end = pos + 9 + length
            if opcode == OP_CHUNK and self._chunk_header(data, pos) is not None:
                yield from self._chunk(data, pos, schemas)
                if end > size:
                    return
                pos = end
                self._release(data, pos)
                continue
            if opcode not in TOP_LEVEL_OPCODES or opcode == OP_CHUNK or end > size:
                problem = ("file ends inside a record (truncated)" if opcode in TOP_LEVEL_OPCODES and end > size
                           else f"unreadable record (opcode {opcode:#04x}, length {length})")
                pos = self._resync(data, pos, problem)
                continue
            if opcode == OP_FOOTER:
                self.complete = data[end:end + len(MAGIC)] == MAGIC
                return
            if opcode in CHUNK_OPCODES:
                yield from self._records(bytes(data[pos:end]), pos, schemas, None)
            pos = end
            self._release(data, pos)
        self.damage.append(McapDamage(size, "file ends without a footer (the writer stopped before closing it; "
                                      "what it had not flushed is lost)", 0))

    def _release(self, data: mmap.mmap, pos: int) -> None:
        """Drop the mapped pages before `pos` from resident memory (every message was copied out already)."""
        upto = pos - pos % mmap.PAGESIZE
        if upto > self._released and hasattr(mmap, "MADV_DONTNEED"):
            data.madvise(mmap.MADV_DONTNEED, self._released, upto - self._released)
            self._released = upto

    def _resync(self, data: mmap.mmap, pos: int, problem: str) -> int:
        """Offset of the next plausible chunk after pos (or the file size); records the skipped region."""
        candidate = pos + 1
        while True:
            candidate = data.find(bytes((OP_CHUNK,)), candidate)
            if candidate < 0:
                candidate = len(data)
                break
            if self._chunk_header(data, candidate) is not None:
                break
            candidate += 1
        self.damage.append(McapDamage(pos, problem, candidate - pos))
        return candidate

    @staticmethod
    def _chunk_header(data: mmap.mmap, pos: int) -> tuple[int, int, int, int, str, int] | None:
        """(start, end, uncompressed size, crc, compression, data offset) of a chunk at pos whose fields agree."""
        if len(data) - pos < 9 + _CHUNK_FIXED:
            return None
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        start, end, uncompressed, crc, name_len = struct.unpack_from("<QQQII", data, pos + 9)
        if start > end or name_len > 8 or length < _CHUNK_FIXED + name_len:
            return None
        name_at = pos + 9 + 32
        try:
            compression = bytes(data[name_at:name_at + name_len]).decode("ascii")
        except UnicodeDecodeError:
            return None
        if compression not in COMPRESSIONS:
            return None
        (compressed,) = struct.unpack_from("<Q", data, name_at + name_len)
        if compressed != length - _CHUNK_FIXED - name_len or (compression == "" and compressed != uncompressed):
            return None
        return start, end, uncompressed, crc, compression, name_at + name_len + 8

    # -- chunks ------------------------------------------------------------------------------------------------
    def _chunk(self, data: mmap.mmap, pos: int, schemas: dict[int, str]
               ) -> Iterator[tuple[McapChannel, int, bytes | None]]:
        start, end, uncompressed, crc, compression, at = self._chunk_header(data, pos)
        if compression == "" and at + uncompressed <= len(data):
            with memoryview(data)[at:at + uncompressed] as raw:  # an intact uncompressed chunk: read in place
                if self._crc_matches(raw, crc, pos, uncompressed):
                    yield from self._records(raw, at, schemas, (start, end))
            return
        available = data[at:at + uncompressed] if compression == "" else data[at:pos + 9 + _length(data, pos)]
        if at + len(available) < pos + 9 + _length(data, pos):  # cut short
            if compression:
                self.damage.append(McapDamage(pos, f"{compression} chunk cut short (truncated file)",
                                              len(data) - pos))
                return
            self.damage.append(McapDamage(at + len(available), "chunk cut short (truncated file): messages before "
                                          "the cut were read", 0))
            yield from self._records(bytes(available), at, schemas, (start, end))
            return
        try:
            raw = bytes(available) if compression == "" else _decompress(bytes(available), compression, uncompressed)
        except Exception as exc:  # the decompressors raise assorted types on corrupt input
            self.damage.append(McapDamage(pos, f"{compression} chunk does not decompress: {exc}", len(available)))
            return
        if self._crc_matches(raw, crc, pos, len(available)):
            yield from self._records(raw, at, schemas, (start, end))

    def _crc_matches(self, raw: bytes | memoryview, crc: int, pos: int, size: int) -> bool:
        """Whether a chunk's records (raw) match its CRC (0: none stored); a mismatch is recorded as damage of the
        chunk at pos (size bytes skipped)."""
        if crc and zlib.crc32(raw) != crc:
            self.damage.append(McapDamage(pos, "chunk CRC mismatch: chunk skipped", size))
            return False
        return True

    def _records(self, raw: bytes | memoryview, base: int, schemas: dict[int, str],
                 time_range: tuple[int, int] | None) -> Iterator[tuple[McapChannel, int, bytes | None]]:
        """Schema, Channel and Message records of a chunk's data (or one top-level record); base = file offset.
        Payloads are copied out (bytes) for the topics asked for only."""
        from mcap.data_stream import ReadDataStream
        from mcap.records import Channel, Schema

        p, size = 0, len(raw)
        while p < size:
            if size - p < 9:
                self.damage.append(McapDamage(base + p, "record header cut short", size - p))
                return
            opcode = raw[p]
            (length,) = struct.unpack_from("<Q", raw, p + 1)
            end = p + 9 + length
            ok = opcode in CHUNK_OPCODES and end <= size and (
                opcode != OP_MESSAGE or self._plausible_message(raw, p, time_range))
            if ok and opcode in (OP_SCHEMA, OP_CHANNEL):
                try:
                    stream = ReadDataStream(BytesIO(raw[p + 9:end]))
                    if opcode == OP_SCHEMA:
                        schema = Schema.read(stream)
                        schemas[schema.id] = schema.name
                    else:
                        ch = Channel.read(stream)
                        self.channels[ch.id] = McapChannel(ch.id, ch.topic, schemas.get(ch.schema_id, ""),
                                                           ch.message_encoding, dict(ch.metadata))
                except Exception:  # struct.error, UnicodeDecodeError, ...: a damaged record
                    ok = False
            if not ok:
                raw = bytes(raw)  # damaged: search it as bytes (a view of the mapping has no find)
                skip_to = self._next_message(raw, p + 1, time_range)
                self.damage.append(McapDamage(base + p, f"unreadable record (opcode {opcode:#04x}) inside a chunk",
                                              skip_to - p))
                p = skip_to
                continue
            if opcode == OP_MESSAGE:
                channel_id, _, log_time = struct.unpack_from("<HIQ", raw, p + 9)
                channel = self.channels.get(channel_id)
                if channel is None:
                    self.orphan_messages += 1
                else:
                    wanted = self._topics is None or channel.topic in self._topics
                    yield channel, log_time, bytes(raw[p + 9 + _MESSAGE_FIXED:end]) if wanted else None
            p = end

    def _plausible_message(self, raw: bytes, p: int, time_range: tuple[int, int] | None) -> bool:
        (length,) = struct.unpack_from("<Q", raw, p + 1)
        if length < _MESSAGE_FIXED or p + 9 + length > len(raw):
            return False
        channel_id, _, log_time = struct.unpack_from("<HIQ", raw, p + 9)
        return channel_id in self.channels and (time_range is None or time_range[0] <= log_time <= time_range[1])

    def _next_message(self, raw: bytes, p: int, time_range: tuple[int, int] | None) -> int:
        """Offset of the next plausible message record at or after p (or len(raw))."""
        while True:
            p = raw.find(bytes((OP_MESSAGE,)), p)
            if p < 0 or len(raw) - p < 9 + _MESSAGE_FIXED:
                return len(raw)
            if self._plausible_message(raw, p, time_range):
                return p
            p += 1


def _length(data: mmap.mmap, pos: int) -> int:
    return struct.unpack_from("<Q", data, pos + 1)[0]


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    import lz4.frame

    return lz4.frame.decompress(data)

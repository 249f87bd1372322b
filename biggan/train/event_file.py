"""TensorBoard scalar event files, written without TensorFlow, tensorboardX or torch.

The format is TensorFlow's event file: a TFRecord file (each record: the payload's length as a
little-endian uint64, the masked CRC-32C of those 8 bytes, the payload, its masked CRC-32C) of
`Event` protos (tensorflow/core/util/event.proto). The first event carries file_version
"brain.Event:2"; each scalar is one event with wall_time, step and summary.value[0] = {tag,
simple_value}. These are exactly the bytes tensorboardX's `SummaryWriter.add_scalar` writes
(tests/train/test_event_file.py compares them).

Why not tensorboardX's writer (BUILD_NOTES.md, Dependencies): importing tensorboardX imports torch
whenever torch is installed, a cost every training process would pay, and the trainer writes only
scalars.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import numpy as np

# --------------------------------------------------------------------------- CRC-32C (Castagnoli)
_CRC32C_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC (tensorflow/core/lib/hash/crc32c.h: rotate right by 15, add a
    constant)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


# --------------------------------------------------------------------------- protobuf wire format
def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 fields: negatives are ten-byte two's complement varints
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, body: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + body


def _length_delimited(number: int, body: bytes) -> bytes:
    return _field(number, 2, _varint(len(body)) + body)


def event_bytes(
    wall_time: float,
    step: int = 0,
    *,
    file_version: str | None = None,
    tag: str | None = None,
    value: float | None = None,
) -> bytes:
    """A serialized Event: wall_time (field 1, double), step (2, int64), file_version (3, string) or
    summary (5) with one Summary.Value (1) of tag (1, string) and simple_value (2, float). proto3
    leaves zero wall_time/step out; simple_value sits in a oneof, so it is written even when 0."""
    out = b""
    if wall_time:
        out += _field(1, 1, struct.pack("<d", wall_time))
    if step:
        out += _field(2, 0, _varint(step))
    if file_version is not None:
        out += _length_delimited(3, file_version.encode())
    if tag is not None:
        # as protobuf: a double beyond float32's range becomes ±inf
        with np.errstate(over="ignore"):
            simple_value = np.asarray(value, "<f4").tobytes()
        summary_value = _length_delimited(1, tag.encode()) + _field(2, 5, simple_value)
        out += _length_delimited(5, _length_delimited(1, summary_value))
    return out


class ScalarEventWriter:
    """`logdir/events.out.tfevents.<unix time>.<hostname>`, TensorBoard's naming; `add_scalar`
    buffers, `flush` writes (and does nothing once closed, as tensorboardX's: a gs:// run uploads
    its files after closing)."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(
            logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        )
        self._file = open(self.path, "wb")
        self._file.write(tfrecord(event_bytes(time.time(), file_version="brain.Event:2")))
        self._file.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None):
        self._file.write(
            tfrecord(
                event_bytes(
                    time.time() if wall_time is None else wall_time,
                    int(step),
                    tag=tag,
                    value=float(value),
                )
            )
        )

    def flush(self):
        if not self._file.closed:
            self._file.flush()

    def close(self):
        self._file.close()

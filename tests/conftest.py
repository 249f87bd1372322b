"""Test setup: simulate 8 CPU devices before JAX initialises (DEVELOPERS.md, 'This machine')."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

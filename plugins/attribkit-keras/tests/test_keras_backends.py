"""The suite again on the other Keras backend (fixed when keras is imported: a subprocess)."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

OTHER = {"jax": "torch", "torch": "jax"}
INNER = "ATTRIBKIT_KERAS_INNER"


@pytest.mark.skipif(bool(os.environ.get(INNER)), reason="already the run on the other backend")
def test_the_suite_passes_on_the_other_keras_backend():
    other = OTHER[keras.backend.backend()]
    here = Path(__file__).resolve().parent
    env = {**os.environ, "KERAS_BACKEND": other, INNER: "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", str(here), "-x", "-p", "no:cacheprovider"],
                          cwd=here.parents[2], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"on the {other} backend:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert f"on the {other} backend" in done.stdout  # the header: the run really was on it

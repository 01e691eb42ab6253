import os
from pathlib import Path

import artem_cli  # noqa: F401  (first: it sets OpenBLAS's and numba's thread settings before NumPy loads)
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_IMAGES = REPO.parent / "shared" / "images"
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def weights_path():
    """The converted reference weights (`make test` fetches them first)."""
    from artem_cli import weights

    path = weights.locate()
    assert path.is_file()
    return path


@pytest.fixture
def painting():
    """A real painting from ../shared/images (CI has it beside the clone)."""
    path = SHARED_IMAGES / "starry_night.jpg"
    assert path.is_file(), f"{path} is missing: the tests need ../shared beside the repository"
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never let a test write to the user's cache or depend on ARTEM_WEIGHTS from outside."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if os.environ.get("ARTEM_WEIGHTS"):
        monkeypatch.delenv("ARTEM_WEIGHTS")

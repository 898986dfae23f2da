"""Shared fixtures: the real Firefly CLI as a subprocess, copies of the models."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, Server, showcase_models, start_firefly


@pytest.fixture(scope="module")
def firefly_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The Firefly CLI serving firefly.yml (predict, info, health)."""
    server = start_firefly(tmp_path_factory.mktemp("firefly"), "-c", "firefly.yml")
    yield server
    server.stop()


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped models, to tamper with."""
    target = tmp_path / "models"
    shutil.copytree(ROOT / "models", target)
    return target


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped models, a text model in two versions and one whose card holds markup."""
    return showcase_models(tmp_path_factory.mktemp("showcase") / "models")

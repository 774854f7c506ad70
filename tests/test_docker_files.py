"""No Docker engine runs here, so the compose file and Dockerfile are checked against the
code instead: same pgvector image as the tests, the variable the code reads, real targets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import PGVECTOR_IMAGE

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e '.[test]'")
DOCKER = Path(__file__).resolve().parents[1] / "docker"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_database_is_the_tested_pgvector_image_with_a_healthcheck(compose):
    db = compose["services"]["db"]
    assert db["image"] == PGVECTOR_IMAGE
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_migrate_and_loader_read_database_url_and_wait(compose):
    services = compose["services"]
    assert services["migrate"]["command"] == ["pgvision", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["loader"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("migrate", "loader"):
        url = services[name]["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql://pgvision:") and url.endswith("@db:5432/pgvision")


def test_compose_server_settings_are_the_tuned_ones_for_its_stated_size(compose):
    """compose.yaml states the container it is sized for (2 cores, 8 GB: `pgvision db tune
    --database-url ... --ram 8GB --cores 2`); its -c values are that tuning's."""
    from pgvision.server import tuning

    tuned = {s.name: s.value for s in tuning.settings_for(tuning.Machine(8 * tuning.GB, 2))}
    args = compose["services"]["db"]["command"]
    settings = dict(a.split("=", 1) for a in args if "=" in a)
    assert settings and set(settings) <= set(tuned)
    for name, value in settings.items():
        assert tuned[name] == value, name


def test_dockerfile_targets_exist(compose):
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", (DOCKER / "Dockerfile").read_text(), re.M))
    for name in ("migrate", "loader"):
        assert compose["services"][name]["build"]["target"] in targets

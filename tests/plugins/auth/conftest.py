from pathlib import Path

import pytest

from tests.db.backends import db, db_url, make_db, pg_url, sqlite_url
from tests.standins import oidc_provider

__all__ = ["db", "db_url", "make_db", "pg_url", "sqlite_url"]


@pytest.fixture(scope="session")
def oidc_provider_folder(pytestconfig: pytest.Config) -> Path:
    """panva's oidc-provider, installed with ``npm ci`` once per version into pytest's cache."""
    assert pytestconfig.cache is not None, "the oidc-provider install is kept in pytest's cache"
    return oidc_provider.install(pytestconfig.cache.mkdir("oidc_provider"))

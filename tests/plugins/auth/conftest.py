from pathlib import Path

import pytest

from tests.db.backends import db, db_url, make_db, pg_url, sqlite_url
from tests.standins import oidc_provider

__all__ = ["db", "db_url", "make_db", "pg_url", "sqlite_url"]


@pytest.fixture(scope="session")
def oidc_provider_folder() -> Path:
    """panva's oidc-provider, installed with ``npm ci`` once per version into the test cache."""
    return oidc_provider.install()

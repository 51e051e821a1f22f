import tempfile
from pathlib import Path

import pytest

from tests.db.backends import db, db_url, make_db, pg_url, sqlite_url
from tests.standins import oidc_provider

__all__ = ["db", "db_url", "make_db", "pg_url", "sqlite_url"]


@pytest.fixture(scope="session")
def oidc_provider_folder(pytestconfig: pytest.Config) -> Path:
    """panva's oidc-provider, installed with ``npm ci`` once per version into pytest's cache (or the
    temporary directory when the cache is turned off)."""
    cache = getattr(pytestconfig, "cache", None)  # absent under ``-p no:cacheprovider``
    if cache is not None:
        return oidc_provider.install(cache.mkdir("oidc_provider"))
    return oidc_provider.install(Path(tempfile.gettempdir()) / "shmastra-tests-oidc-provider")

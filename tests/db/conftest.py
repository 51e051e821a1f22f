from tests.db.backends import db, db_url, make_db, pg_url, sqlite_url

__all__ = ["db", "db_url", "make_db", "pg_url", "sqlite_url"]

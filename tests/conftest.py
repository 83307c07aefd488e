"""The tests' shared fixtures live in tests/support/platform_fixtures.py, registered (with the
S3 and PostgreSQL ones) by the root conftest.py so apps/video/tests gets them too; the
helpers are re-exported here for the modules that import them from ``tests.conftest``."""

from tests.support.platform_fixtures import _no_service, require_services

__all__ = ["_no_service", "require_services"]

"""Registers the fixtures every test directory (tests/, apps/video/tests/) shares: an isolated
MILLSTREAM_HOME per test, the hypothesis profiles, Kafka, an S3-compatible server and PostgreSQL."""

pytest_plugins = [
    "tests.support.hypothesis_profiles",
    "tests.support.platform_fixtures",
    "tests.support.s3_fixtures",
    "tests.support.pg_fixtures",
]

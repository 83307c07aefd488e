"""Fixtures for an S3-compatible server in tests (filled in by the files work)."""

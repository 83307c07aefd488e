"""Fixtures for a real PostgreSQL in tests (filled in by the tables work)."""

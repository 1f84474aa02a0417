"""Helpers shared by the test suites (tests/ and hw-sim/tests/)."""

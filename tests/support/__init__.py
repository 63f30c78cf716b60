"""Test helpers shared by the suites (not a test module)."""

"""Helpers shared by the test suites: recorded events, a small trained demo model, a Lambda context."""

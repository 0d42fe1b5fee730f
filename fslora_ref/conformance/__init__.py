"""Conformance battery: check_* functions that hold an implementation against the reference."""

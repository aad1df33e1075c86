"""Small services for the master's interop tests, run through PYTHONPATH."""

"""Documentation tooling: ``python -m docs.generate`` writes the configuration reference."""

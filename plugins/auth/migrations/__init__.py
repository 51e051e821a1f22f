"""The ``auth`` plugin's tables: ``users`` and ``sessions``."""

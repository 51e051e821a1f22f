"""The ``auth`` plugin's tables: ``users``, ``sessions`` and ``login_codes``."""

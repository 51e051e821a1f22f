"""The ``vkey`` plugin's tables: ``virtual_keys`` and ``usage``."""

DEPENDS_ON = ("auth",)

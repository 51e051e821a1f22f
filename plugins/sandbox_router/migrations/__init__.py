"""The ``sandbox_router`` plugin's table: ``sandboxes`` (one per user)."""

DEPENDS_ON = ("auth",)

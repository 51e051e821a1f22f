"""The ``manage`` plugin's table: ``audit_log``. It keeps user ids without foreign keys, so the
history of a deleted user stays as it was."""

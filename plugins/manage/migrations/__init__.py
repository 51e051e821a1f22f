"""The ``manage`` plugin's tables: ``audit_log`` and ``admin_tokens``. They keep user ids without
foreign keys, so the history of a deleted user stays as it was."""

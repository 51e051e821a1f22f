"""The ``manage`` plugin's tables: ``audit_log``, ``admin_tokens``, ``manage_settings``, ``rollouts``
and ``rollout_items``. They keep user ids without foreign keys to ``users``, so the history of a
deleted user stays as it was."""

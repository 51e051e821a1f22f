"""Sandbox providers: the contract (``base``) and its implementations."""

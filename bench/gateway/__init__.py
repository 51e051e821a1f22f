"""The gateway benchmark: direct vs the vkey gateway vs LiteLLM's proxy (``python -m bench.gateway``)."""

"""The gateway benchmark: direct vs through the vkey gateway vs through LiteLLM's proxy (``python -m bench.gateway``)."""

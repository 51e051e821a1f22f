"""Shared fixtures: real aiohttp servers on loopback (pytest-aiohttp) plus the proxy in front of them."""

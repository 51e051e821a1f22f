"""Side-by-side benchmarks of proxy_core against nginx, configurable-http-proxy and a naive aiohttp proxy.

Run everything with ``bench/run.sh`` (or ``python -m bench``); see ``bench/README.md``.
"""

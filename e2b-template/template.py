"""Builds this folder into the E2B template, exactly as ``shmastra-cloud template build`` does (the
definition is ``plugins.sandbox_router.template.definition``): ``python e2b-template/template.py
[--tag VERSION] [--dry-run]`` with the project installed."""

import sys

from proxy_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["template", "build", *sys.argv[1:]]))

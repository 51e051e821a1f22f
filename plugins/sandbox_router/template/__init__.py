"""What a sandbox is made of, for both providers: the ``e2b-template/`` folder (the bundled Mastra
project, pm2, ``start.sh``, the healer), prepared once per version for the local provider and populated
cheaply into each user's workspace, or built into an E2B template (``shmastra-cloud template build``)."""

from ..providers.base import Progress, ProgressCallback
from .node import NodeRuntime, NodeUnavailable, node_runtime
from .prepare import (
    BUNDLED_TEMPLATE_DIR,
    PreparedTemplate,
    TemplateError,
    prepare,
    template_key,
    template_version,
)
from .workspace import populate_workspace

__all__ = [
    "BUNDLED_TEMPLATE_DIR",
    "NodeRuntime",
    "NodeUnavailable",
    "PreparedTemplate",
    "Progress",
    "ProgressCallback",
    "TemplateError",
    "node_runtime",
    "populate_workspace",
    "prepare",
    "template_key",
    "template_version",
]

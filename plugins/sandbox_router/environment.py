"""The environment every sandbox gets, the same for every provider (see the compat notes): Mastra's
paths and token, the cloud's gateway as every LLM base URL, and the virtual key as every provider key.

Nothing here comes from the proxy's own environment: the team's real keys never reach a sandbox.
"""

from __future__ import annotations

import uuid

PROVIDER_KEY_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GEMINI_API_KEY",
    "GOOGLE_GENERATIVE_AI_API_KEY",
    "COMPOSIO_API_KEY",
)


def sandbox_env(
    *,
    user_id: uuid.UUID,
    virtual_key: str,
    app_token: str,
    public_url: str,
    cloud_url: str,
    studio_path: str,
    api_prefix: str,
) -> dict[str, str]:
    """``public_url`` is where browsers reach the cloud (CORS); ``cloud_url`` where the sandbox does."""
    gateway = cloud_url.rstrip("/") + "/api/gateway"
    env = {
        "MASTRA_STUDIO_BASE_PATH": studio_path,
        "MASTRA_API_PREFIX": api_prefix,
        "MASTRA_AUTH_TOKEN": app_token,
        "CORS_ORIGIN": public_url.rstrip("/"),
        "USER_ID": str(user_id),
        "OPENAI_BASE_URL": f"{gateway}/openai/v1",
        "ANTHROPIC_BASE_URL": f"{gateway}/anthropic/v1",
        "GOOGLE_GEMINI_BASE_URL": f"{gateway}/gemini/v1beta",
        "GEMINI_BASE_URL": f"{gateway}/gemini/v1beta",
        "COMPOSIO_BASE_URL": f"{gateway}/composio",
        "MASTRA_TELEMETRY_DISABLED": "1",
        "TELEMETRY_DISABLED": "true",
        "SHMASTRA_CLOUD_URL": cloud_url.rstrip("/"),
        "SHMASTRA_VIRTUAL_KEY": virtual_key,
    }
    env.update(dict.fromkeys(PROVIDER_KEY_VARS, virtual_key))
    return env

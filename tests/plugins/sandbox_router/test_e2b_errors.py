"""E2B failing in every way it can, through the real SDK: each failure is one of the contract's
errors, every call is bounded, and configuration mistakes are caught before any call."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from e2b import (
    AuthenticationException,
    FileNotFoundException,
    GuestUnresponsiveException,
    InvalidArgumentException,
    NotEnoughSpaceException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    ServiceBusyException,
    TimeoutException,
)

from plugins.sandbox_router.providers.base import (
    Handle,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    SandboxGone,
    SandboxSpec,
)
from plugins.sandbox_router.providers.e2b import E2BConfig, E2BProvider
from plugins.sandbox_router.providers.e2b_errors import translate
from tests.standins.e2b import E2BStandin, running_e2b_standin

SPEC = SandboxSpec(user_id="user-1", env={"USER_ID": "user-1"})


@pytest.fixture
async def standin(tmp_path: Path) -> AsyncIterator[E2BStandin]:
    async with running_e2b_standin(tmp_path / "e2b") as running:
        yield running


def make_provider(standin: E2BStandin, **settings: Any) -> E2BProvider:
    return E2BProvider(
        E2BConfig.model_validate(
            {**standin.settings, "request_timeout": 5, "app_check_command": "true", **settings}
        )
    )


async def test_rate_limit_beyond_the_bound_is_reported_at_once(standin: E2BStandin) -> None:
    provider = make_provider(standin, rate_limit_backoff=3.5)
    standin.fail("create", 429, times=4, retry_after="60")

    with pytest.raises(ProviderRateLimited) as refused:
        await provider.create(SPEC, lambda _: None)

    assert refused.value.retry_after == 3.5
    assert len(standin.recorded("create")) == 1  # the SDK did not sit out 60 s past the bound
    assert standin.sandboxes == {}


async def test_a_short_rate_limit_is_waited_out_by_one_create(standin: E2BStandin) -> None:
    provider = make_provider(standin)
    standin.fail("create", 429, retry_after="1")

    handle = await provider.create(SPEC, lambda _: None)

    first, second = standin.recorded("create")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert list(standin.sandboxes) == [handle.sandbox_id]


async def test_rate_limits_after_every_retry_are_reported(standin: E2BStandin) -> None:
    provider = make_provider(standin, retries=1)
    standin.fail("pause", 429, times=2, retry_after="0")
    with pytest.raises(ProviderRateLimited):
        await provider.pause(Handle("sbx-any"))
    assert len(standin.recorded("pause")) == 2


async def test_a_refused_api_key_is_one_clear_operator_message(
    standin: E2BStandin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make_provider(standin, api_key="e2b_wrong_key_123")

    with pytest.raises(ProviderAuthError) as refused:
        await provider.create(SPEC, lambda _: None)

    assert "E2B_API_KEY" in refused.value.message
    assert "e2b_wrong_key_123" not in caplog.text
    assert "E2B_API_KEY" in caplog.text
    with pytest.raises(ProviderAuthError):
        await provider.list()


@pytest.mark.parametrize("operation", ["create", "connect", "pause", "kill", "timeout", "list"])
async def test_service_unavailable_is_unavailable(standin: E2BStandin, operation: str) -> None:
    provider = make_provider(standin, retries=0)
    handle = await provider.create(SPEC, lambda _: None)
    standin.fail(operation, 503)
    calls = {
        "create": lambda: provider.create(SPEC, lambda _: None),
        "connect": lambda: provider.resume(handle, lambda _: None),
        "pause": lambda: provider.pause(handle),
        "kill": lambda: provider.kill(handle),
        "timeout": lambda: provider.extend(handle, 600),
        "list": provider.list,
    }
    with pytest.raises(ProviderUnavailable):
        await calls[operation]()


async def test_server_errors_are_unavailable_after_the_sdk_retries(standin: E2BStandin) -> None:
    provider = make_provider(standin)
    standin.fail("connect", 502, times=4)
    with pytest.raises(ProviderUnavailable):
        await provider.resume(Handle("sbx-any"), lambda _: None)
    assert len(standin.recorded("connect")) == 4  # the first try and the SDK's 3 retries
    standin.fail("timeout", 500)
    with pytest.raises(ProviderUnavailable):
        await provider.extend(Handle("sbx-any"), 60)


@pytest.mark.parametrize("operation", ["create", "connect", "pause", "list"])
async def test_a_hanging_api_is_a_timeout(standin: E2BStandin, operation: str) -> None:
    provider = make_provider(standin, request_timeout=0.5)
    standin.hang(operation, 30)
    calls = {
        "create": lambda: provider.create(SPEC, lambda _: None),
        "connect": lambda: provider.resume(Handle("sbx-any"), lambda _: None),
        "pause": lambda: provider.pause(Handle("sbx-any")),
        "list": provider.list,
    }
    with pytest.raises(ProviderTimeout):
        await calls[operation]()


async def test_an_unreachable_api_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    provider = E2BProvider(
        E2BConfig.model_validate(
            {"api_key": "k", "api_url": f"http://127.0.0.1:{closed}", "request_timeout": 5, "retries": 0}
        )
    )
    with pytest.raises(ProviderUnavailable):
        await provider.list()


async def test_the_sdk_environment_variables_point_it_at_the_standin(
    standin: E2BStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in standin.env.items():
        monkeypatch.setenv(name, value)
    provider = E2BProvider(E2BConfig.model_validate({"app_check_command": "true"}))

    handle = await provider.create(SPEC, lambda _: None)

    assert (await provider.run(handle, "echo $USER_ID", limit=10)).stdout == "user-1\n"
    endpoint = provider.endpoint(handle)
    assert str(endpoint.base_url) == standin.url
    assert endpoint.headers["E2b-Sandbox-Id"] == handle.sandbox_id


def test_a_missing_api_key_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(ValueError, match="E2B_API_KEY"):
        E2BProvider(E2BConfig())


@pytest.mark.parametrize(
    "settings",
    [
        {"tempalte": "shmastra"},
        {"template_tag": "v1 beta"},
        {"sandbox_timeout": 5},
        {"request_timeout": 0},
        {"api_url": "not a url"},
        {"page_size": 1000},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        E2BConfig.model_validate(settings)


DETAIL = "upstream body: sbx-secret-detail"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (RateLimitException(DETAIL), ProviderRateLimited),
        (SandboxNotFoundException(DETAIL), SandboxGone),
        (SandboxNotRunningException(DETAIL), SandboxGone),
        (AuthenticationException(DETAIL), ProviderAuthError),
        (ServiceBusyException(DETAIL), ProviderUnavailable),
        (SandboxUnreachableException(DETAIL), ProviderUnavailable),
        (SandboxException(DETAIL, status_code=500), ProviderUnavailable),
        (SandboxException(DETAIL, status_code=504), ProviderTimeout),
        (TimeoutException(DETAIL), ProviderTimeout),
        (httpx.ReadTimeout(DETAIL), ProviderTimeout),
        (TimeoutError(DETAIL), ProviderTimeout),
        (httpx.ConnectError(DETAIL), ProviderUnavailable),
        (ConnectionRefusedError(DETAIL), ProviderUnavailable),
        (InvalidArgumentException(DETAIL), ProviderError),
        (NotEnoughSpaceException(DETAIL), ProviderError),
        (GuestUnresponsiveException(DETAIL), ProviderError),
        (SandboxException(DETAIL, status_code=409), ProviderError),
        (RuntimeError(DETAIL), ProviderError),
    ],
)
def test_every_sdk_failure_becomes_a_contract_error(raised: Exception, expected: type[Exception]) -> None:
    translated = translate(raised, "create", retry_after=2.0)
    assert type(translated) is expected
    assert isinstance(translated, ProviderError)
    assert "secret" not in translated.message  # the SDK's text (response bodies) is only logged
    if isinstance(translated, ProviderRateLimited):
        assert translated.retry_after == 2.0


def test_a_missing_file_is_the_builtin_error() -> None:
    assert isinstance(translate(FileNotFoundException(DETAIL), "read", retry_after=1), FileNotFoundError)

"""The stage contract: a small class with a short name, a typed config and an aiohttp-middleware call.

A stage sees every request in pipeline order. It either answers (short-circuits) by returning a
response, or hands the request on with ``await next(request)``. Data flows to later stages only
through typed ``web.RequestKey`` / ``web.AppKey`` values that the producing stage exports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast, get_args, get_origin

from aiohttp import web

from .config import ProxyConfig
from .config import StageConfig as StageConfig  # re-exported: its home before it moved to config
from .credentials import OwnedCredentials

if TYPE_CHECKING:
    from .forward import Forwarder
    from .metrics import Metrics

Next = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""What a stage calls to hand the request to the rest of the pipeline."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """A stage's answer to "can you serve?", shown by ``/readyz``."""

    ready: bool
    detail: str = ""


class Resource(Protocol):
    """A service several stages share (the database, say): opened before any stage's lifespan starts,
    closed after the last one ends, and part of ``/readyz``."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def readiness(self) -> Readiness: ...


R = TypeVar("R", bound=Resource)


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a stage gets at construction: the whole frozen config and the shared services."""

    config: ProxyConfig
    forwarder: Forwarder
    metrics: Metrics
    resources: dict[Hashable, Resource] = field(default_factory=dict)
    checking: bool = False
    """Built by ``check``, never to serve: a stage writes nothing (no generated files, no folders)."""

    def resource(self, key: Hashable, factory: Callable[[], R]) -> R:
        """The shared resource under ``key``, created by ``factory`` the first time anyone asks."""
        found = self.resources.get(key)
        if found is None:
            found = self.resources[key] = factory()
        return cast(R, found)


C = TypeVar("C", bound=StageConfig)


class Stage(Generic[C]):
    """Base class for stages. Subclasses set ``name``, say their config type once as the type
    argument (``class TenantStage(Stage[TenantConfig])``), and override what they need.

    Every hook has a harmless default, so a stage is as small as the one method it cares about.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[StageConfig]] = StageConfig
    """Derived from ``Stage[XConfig]``; a subclass that also sets it must agree."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = _config_argument(cls)
        if declared is None:
            return
        explicit = cls.__dict__.get("config_class")
        if explicit is not None and explicit is not declared:
            raise TypeError(
                f"{cls.__name__}: config_class {explicit.__name__} disagrees with "
                f"Stage[{declared.__name__}]; drop config_class, the type argument says it"
            )
        cls.config_class = declared

    def __init__(self, config: C, context: StageContext) -> None:
        self.config = config
        self.context = context

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        return await next(request)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        """Routes this stage contributes (callbacks, pages, APIs). They run behind earlier stages."""
        return ()

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Start-up before the ``yield``, tear-down after it; registered as an aiohttp cleanup context."""
        yield

    async def readiness(self) -> Readiness:
        """Contributes to ``/readyz``; the proxy is ready only when every stage is."""
        return Readiness(True)

    def banner(self) -> str:
        """A short phrase for the start-up banner (who may sign in, say); empty for nothing to say."""
        return ""

    def owned_credentials(self) -> OwnedCredentials:
        """Cookies and headers this stage consumes (a session cookie, say): the forwarder removes them
        from every request it sends upstream, so they never leave the proxy."""
        return OwnedCredentials()


def _config_argument(cls: type) -> type[StageConfig] | None:
    """``XConfig`` when ``cls`` is declared ``class S(Stage[XConfig])`` (directly)."""
    for base in getattr(cls, "__orig_bases__", ()):
        if get_origin(base) is Stage:
            (argument,) = get_args(base)
            if isinstance(argument, type) and issubclass(argument, StageConfig):
                return argument
    return None

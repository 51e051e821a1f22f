"""``shmastra-cloud users list | add EMAIL [--admin] [--name NAME] | disable EMAIL | enable EMAIL |
set-role EMAIL ROLE``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from proxy_core.db.cli import connected, run

from .directory import UserDirectory
from .users import ROLES, User


def _show(user: User) -> str:
    flags = " (disabled)" if user.disabled else ""
    name = f"  {user.name}" if user.name else ""
    return f"{user.email}  {user.role}{flags}{name}  {user.id}"


async def _list(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        everyone = await UserDirectory(db).list()
    for user in everyone:
        print(_show(user))
    if not everyone:
        print("no users yet")
    return 0


async def _add(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        user = await UserDirectory(db).create(
            args.email, name=args.name, role="admin" if args.admin else "member"
        )
    print(f"added {_show(user)}")
    return 0


async def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    async with connected(args) as db:
        user = await UserDirectory(db).set_disabled(args.email, disabled)
    print(f"{'disabled' if disabled else 'enabled'} {_show(user)}")
    return 0


async def _disable(args: argparse.Namespace) -> int:
    return await _set_disabled(args, True)


async def _enable(args: argparse.Namespace) -> int:
    return await _set_disabled(args, False)


async def _set_role(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        user = await UserDirectory(db).set_role(args.email, args.role)
    print(f"updated {_show(user)}")
    return 0


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    users = commands.add_parser("users", help="list, add, disable users and set their role")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every user with role and state")
    config_option(listing)
    listing.set_defaults(func=run(_list))

    add = actions.add_parser("add", help="add a user who may then sign in")
    add.add_argument("email")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--name", help="display name")
    config_option(add)
    add.set_defaults(func=run(_add))

    disable = actions.add_parser("disable", help="refuse the user's sign-ins and requests")
    disable.add_argument("email")
    config_option(disable)
    disable.set_defaults(func=run(_disable))

    enable = actions.add_parser("enable", help="undo disable")
    enable.add_argument("email")
    config_option(enable)
    enable.set_defaults(func=run(_enable))

    set_role = actions.add_parser("set-role", help="make a user a member or an admin")
    set_role.add_argument("email")
    set_role.add_argument("role", choices=ROLES)
    config_option(set_role)
    set_role.set_defaults(func=run(_set_role))

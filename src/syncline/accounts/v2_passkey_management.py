"""Managing a user's passkeys with 2.x: ``useAddPasskey``, ``useRemovePasskey``, list, rename.

In ``functions/auth.py``, next to :meth:`~syncline.accounts.v2.ConvexAuthV2.username_passkey`
(with the same ``rp_id``, ``origins`` and ``rp_name`` when those are given)::

    (
        startAddPasskey,
        verifyAddPasskey,
        finishAddPasskey,
        startRemovePasskey,
        finishRemovePasskey,
        listPasskeys,
        renamePasskey,
    ) = auth.v2.passkey_management()

All need a signed-in caller (``NOT_LOGGED_IN`` otherwise). Adding and
removing a passkey first ask the user to sign the challenge with a passkey
they already have (adding: any of theirs; removing: any but the one that
goes), so a stolen session alone cannot change the user's passkeys. A user
keeps at least one passkey (``LAST_PASSKEY``) and has at most
:data:`MAX_PASSKEYS_PER_USER` (``TOO_MANY_PASSKEYS``).
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

from syncline.accounts.errors import auth_error
from syncline.accounts.helpers import get_auth_user_id
from syncline.accounts.tables import ACCOUNTS, PASSKEYS
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.values.validators import v

if TYPE_CHECKING:
    from syncline.accounts.v2 import ConvexAuthV2
    from syncline.accounts.v2_passkey import PasskeyMethod

__all__ = ["MAX_PASSKEYS_PER_USER", "MAX_PASSKEY_NAME_LENGTH", "management_functions"]

MAX_PASSKEYS_PER_USER = 20
MAX_PASSKEY_NAME_LENGTH = 64

_CONFIRM_ADD, _ADD, _REMOVE = "confirmAdd", "add", "remove"


def _failed(error: str) -> dict[str, Any]:
    return {"success": False, "userError": {"error": error}}


def _valid_name(name: str) -> bool:
    return (
        0 < len(name) <= MAX_PASSKEY_NAME_LENGTH
        and name == name.strip()
        and not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name)
    )


class _Management:
    def __init__(self, method: PasskeyMethod) -> None:
        self.method = method

    def _owned(self, ctx: Any, user_id: str, passkey_id: str) -> dict[str, Any] | None:
        if ctx.db.normalize_id(PASSKEYS, passkey_id) is None:
            return None
        doc = ctx.db.get(passkey_id)
        return None if doc is None or doc["userId"] != user_id else dict(doc)

    # -- adding ----------------------------------------------------------------------

    def start_add(self, ctx: Any) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        passkeys = self.method.user_passkeys(ctx, user_id)
        if len(passkeys) >= MAX_PASSKEYS_PER_USER:
            return _failed("TOO_MANY_PASSKEYS")
        if not passkeys:
            raise auth_error(
                "NoPasskey",
                "This user has no passkey to confirm the new one with (they signed in another way)",
            )
        challenge = self.method.challenge(ctx, _CONFIRM_ADD, user_id=user_id)
        return {"success": True, "options": self.method.request_options(ctx, challenge, passkeys)}

    def verify_add(self, ctx: Any, response: Any) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        confirmed = self.method.check_assertion(ctx, response, _CONFIRM_ADD, user_id=user_id)
        if isinstance(confirmed, str):
            return _failed(confirmed)
        account = (
            ctx.db.query(ACCOUNTS)
            .with_index(
                "userIdAndProvider",
                lambda q: q.eq("userId", user_id).eq("provider", self.method.id),
            )
            .first()
        )
        username = "" if account is None else str(account["providerAccountId"])
        challenge = self.method.challenge(ctx, _ADD, user_id=user_id)
        exclude = self.method.user_passkeys(ctx, user_id)
        options = self.method.creation_options(ctx, challenge, username, exclude)
        return {"success": True, "options": options}

    def finish_add(self, ctx: Any, response: Any) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        if len(self.method.user_passkeys(ctx, user_id)) >= MAX_PASSKEYS_PER_USER:
            return _failed("TOO_MANY_PASSKEYS")
        new = self.method.add_passkey(ctx, response, _ADD, user_id=user_id)
        if isinstance(new, str):
            return _failed(new)
        return {
            "success": True,
            "passkeyId": self.method.store_passkey(ctx, user_id, new, response),
        }

    # -- removing --------------------------------------------------------------------

    def start_remove(self, ctx: Any, passkeyId: str) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        target = self._owned(ctx, user_id, passkeyId)
        if target is None:
            return _failed("PASSKEY_NOT_FOUND")
        others = [p for p in self.method.user_passkeys(ctx, user_id) if p["_id"] != target["_id"]]
        if not others:
            return _failed("LAST_PASSKEY")
        challenge = self.method.challenge(ctx, _REMOVE, user_id=user_id)
        return {"success": True, "options": self.method.request_options(ctx, challenge, others)}

    def finish_remove(self, ctx: Any, passkeyId: str, response: Any) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        confirmed = self.method.check_assertion(ctx, response, _REMOVE, user_id=user_id)
        if isinstance(confirmed, str):
            return _failed(confirmed)
        target = self._owned(ctx, user_id, passkeyId)
        if target is None:
            return _failed("PASSKEY_NOT_FOUND")
        if confirmed["_id"] == target["_id"]:
            return _failed("PROTOCOL_ERROR")  # a passkey cannot vouch for its own removal
        ctx.db.delete(target["_id"])
        return {"success": True}

    # -- listing and naming ------------------------------------------------------------

    def list(self, ctx: Any) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        passkeys = [
            {
                "passkeyId": p["_id"],
                **({"name": p["name"]} if p.get("name") is not None else {}),
                "credentialId": p["credentialId"],
                "createdAt": p["_creationTime"],
            }
            for p in self.method.user_passkeys(ctx, user_id)
        ]
        return {"success": True, "passkeys": passkeys}

    def rename(self, ctx: Any, passkeyId: str, name: str) -> dict[str, Any]:
        user_id = get_auth_user_id(ctx)
        if user_id is None:
            return _failed("NOT_LOGGED_IN")
        target = self._owned(ctx, user_id, passkeyId)
        if target is None:
            return _failed("PASSKEY_NOT_FOUND")
        if not _valid_name(name):
            return _failed("INVALID_NAME")
        ctx.db.patch(target["_id"], {"name": name})
        return {"success": True}


def management_functions(v2: ConvexAuthV2, method: PasskeyMethod) -> tuple[RegisteredFunction, ...]:
    """The seven functions, in the order of the module docstring."""
    m = _Management(method)
    mutation = FunctionKind.MUTATION
    response = {"response": v.any()}
    passkey = {"passkeyId": v.string()}
    return (
        v2.function(m.start_add, mutation, {}),
        v2.function(m.verify_add, mutation, response),
        v2.function(m.finish_add, mutation, response),
        v2.function(m.start_remove, mutation, passkey),
        v2.function(m.finish_remove, mutation, {**passkey, **response}),
        v2.function(m.list, FunctionKind.QUERY, {}),
        v2.function(m.rename, mutation, {**passkey, "name": v.string()}),
    )

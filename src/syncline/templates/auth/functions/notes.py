from syncline import ConvexError, mutation, query, v
from syncline.accounts import get_auth_user_id


def _require_user(ctx):
    user_id = get_auth_user_id(ctx)
    if user_id is None:
        raise ConvexError({"code": "UNAUTHENTICATED", "message": "Sign in first"})
    return user_id


@query
def mine(ctx):
    """The signed-in user's notes, newest first."""
    user_id = get_auth_user_id(ctx)
    if user_id is None:
        return []
    return (
        ctx.db.query("notes")
        .with_index("by_user", lambda q: q.eq("userId", user_id))
        .order("desc")
        .take(50)
    )


@mutation(args={"text": v.string()})
def add(ctx, text):
    user_id = _require_user(ctx)
    text = text.strip()
    if not text:
        raise ConvexError({"code": "EMPTY", "message": "Write something"})
    return ctx.db.insert("notes", {"userId": user_id, "text": text})

from syncline import internal_query, query
from syncline.accounts import get_auth_user_id


@query
def me(ctx):
    """The signed-in user, read through the identity of the access token."""
    user_id = get_auth_user_id(ctx)
    return None if user_id is None else ctx.db.get(user_id)


@internal_query
def session_count(ctx):
    return len(ctx.db.query("authSessions").collect())

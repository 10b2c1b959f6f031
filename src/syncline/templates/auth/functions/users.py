from syncline import query
from syncline.accounts import get_auth_user_id


@query
def me(ctx):
    """The signed-in user's document, or None."""
    user_id = get_auth_user_id(ctx)
    return None if user_id is None else ctx.db.get(user_id)

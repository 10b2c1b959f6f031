from syncline import query
from syncline.accounts import get_auth_user_id


@query
def me(ctx):
    user_id = get_auth_user_id(ctx)
    if user_id is None:
        return None
    user = ctx.db.get(user_id)
    identity = ctx.auth.get_user_identity()
    return {
        "id": user_id,
        "name": user.get("name"),
        "email": user.get("email"),
        "subject": identity.subject,
    }

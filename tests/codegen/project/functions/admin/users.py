from syncline import query, v


@query(args={"id": v.id("users")}, returns=v.nullable(v.object({"name": v.string()})))
def get(ctx, id):
    user = ctx.db.get(id)
    return None if user is None else {"name": user["name"]}

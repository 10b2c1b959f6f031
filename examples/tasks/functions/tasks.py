"""A tiny task list: try `syncline run tasks:add '{"title": "hello"}'`, then `syncline run tasks:list`."""

from syncline import ConvexError, mutation, query, v


@query(args={"done": v.optional(v.boolean())})
def list(ctx, done=None):
    tasks = ctx.db.query("tasks")
    if done is not None:
        tasks = tasks.with_index("by_done", lambda q: q.eq("done", done))
    return tasks.order("desc").take(50)


@mutation(args={"title": v.string()})
def add(ctx, title):
    if not title.strip():
        raise ConvexError({"code": "EMPTY_TITLE"})
    return ctx.db.insert("tasks", {"title": title, "done": False})


@mutation(args={"id": v.id("tasks")})
def complete(ctx, id):
    ctx.db.patch(id, {"done": True})

"""Tasks: queries read, mutations write (both are transactions), actions do the rest.

Call them from a client as "tasks:list", "tasks:add", ... or from the
command line: `syncline run tasks:add '{"text": "Try Syncline"}'`.
"""

from syncline import ConvexError, action, api, internal_mutation, mutation, query, v


@query(returns=v.array(v.doc("tasks")))
def list(ctx):
    """The 100 newest tasks. Clients subscribed to it get every change pushed.

    `returns` checks the result and types it for TypeScript front ends
    (`syncline codegen`): `v.doc("tasks")` is a document of the tasks table.
    """
    return ctx.db.query("tasks").order("desc").take(100)


@query(args={"done": v.boolean()}, returns=v.array(v.doc("tasks")))
def by_status(ctx, done):
    """Tasks that are (or are not) done, read through the `by_done` index."""
    return ctx.db.query("tasks").with_index("by_done", lambda q: q.eq("done", done)).collect()


@mutation(args={"text": v.string()}, returns=v.id("tasks"))
def add(ctx, text):
    """Add a task; returns its id."""
    text = text.strip()
    if not text:
        raise ConvexError({"code": "EMPTY_TEXT", "message": "A task needs some text"})
    return ctx.db.insert("tasks", {"text": text, "done": False})


@mutation(args={"id": v.id("tasks"), "done": v.boolean()}, returns=v.null())
def set_done(ctx, id, done):
    """Mark a task done (or not done)."""
    if ctx.db.get(id) is None:
        raise ConvexError({"code": "NOT_FOUND", "id": id})
    ctx.db.patch(id, {"done": done})


@mutation(args={"id": v.id("tasks")}, returns=v.null())
def remove(ctx, id):
    """Delete a task."""
    if ctx.db.get(id) is not None:
        ctx.db.delete(id)


@internal_mutation(args={"older_than_ms": v.number()})
def clear_done(ctx, older_than_ms):
    """Delete done tasks created more than `older_than_ms` ago (run by the cron in crons.py).

    Internal: clients cannot call it; crons, actions and `syncline run` can.
    """
    cutoff = ctx.now - older_than_ms
    removed = 0
    for task in ctx.db.query("tasks").with_index("by_done", lambda q: q.eq("done", True)):
        if task["_creationTime"] < cutoff:
            ctx.db.delete(task["_id"])
            removed += 1
    return removed


@action(args={"text": v.string()}, returns=v.array(v.id("tasks")))
async def add_lines(ctx, text):
    """Add one task per non-empty line of `text`; returns their ids.

    Actions are `async` and may do I/O (call an API, send mail, ...); they
    read and write through queries and mutations, each its own transaction.
    """
    ids = []
    for line in text.splitlines():
        if line.strip():
            ids.append(await ctx.run_mutation(api.tasks.add, {"text": line}))
    return ids

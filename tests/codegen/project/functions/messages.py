from syncline import Int64, action, internal_mutation, mutation, query, v

MESSAGE = v.object(
    {
        "_id": v.id("messages"),
        "_creationTime": v.number(),
        "channel": v.string(),
        "body": v.string(),
        "author": v.id("users"),
        "status": v.union(v.literal("sent"), v.literal("read")),
        "likes": v.int64(),
        "attachment": v.optional(v.id("_storage")),
        "meta": v.record(v.string(), v.any()),
    }
)


@query(args={"channel": v.string(), "limit": v.optional(v.number())}, returns=v.array(MESSAGE))
def list(ctx, channel, limit=50):
    """The newest messages of a channel."""
    return (
        ctx.db.query("messages")
        .with_index("by_channel", lambda q: q.eq("channel", channel))
        .order("desc")
        .take(int(limit))
    )


@query
def count(ctx):
    return len(ctx.db.query("messages").collect())


@mutation(
    args={"channel": v.string(), "body": v.string(), "author": v.id("users")},
    returns=v.id("messages"),
)
def send(ctx, channel, body, author):
    return ctx.db.insert(
        "messages",
        {
            "channel": channel,
            "body": body,
            "author": author,
            "status": "sent",
            "likes": Int64(0),
            "meta": {},
        },
    )


@internal_mutation(args={"id": v.id("messages")})
def mark_read(ctx, id):
    ctx.db.patch(id, {"status": "read"})


@action(args={"text": v.string()}, returns=v.object({"words": v.number(), "shout": v.string()}))
async def analyse(ctx, text):
    return {"words": len(text.split()), "shout": text.upper()}

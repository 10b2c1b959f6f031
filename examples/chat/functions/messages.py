"""Chat messages: `messages:list` (live) and `messages:send`.

Try it without a browser: `syncline run messages:send '{"author": "ada", "body": "hi"}'`,
then `syncline run messages:list --watch` and send another one.
"""

import math
import re

from syncline import ConvexError, mutation, query, v

DEFAULT_CHANNEL = "general"
MAX_AUTHOR = 40
MAX_BODY = 2000
CHANNEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def _invalid(field, message):
    raise ConvexError({"code": "INVALID_MESSAGE", "field": field, "message": message})


@query(args={"channel": v.optional(v.string()), "limit": v.optional(v.number())})
def list(ctx, channel=DEFAULT_CHANNEL, limit=50):
    """The latest `limit` messages of `channel` (1 to 200), oldest first."""
    limit = max(1, min(int(limit), 200)) if math.isfinite(limit) else 50
    latest = (
        ctx.db.query("messages")
        .with_index("by_channel", lambda q: q.eq("channel", channel))
        .order("desc")
        .take(limit)
    )
    return latest[::-1]


@mutation(args={"author": v.string(), "body": v.string(), "channel": v.optional(v.string())})
def send(ctx, author, body, channel=DEFAULT_CHANNEL):
    author = " ".join(author.split())
    body = body.strip()
    if not author:
        _invalid("author", "Please enter a name.")
    if len(author) > MAX_AUTHOR:
        _invalid("author", f"Names are at most {MAX_AUTHOR} characters.")
    if not body:
        _invalid("body", "Messages can't be empty.")
    if len(body) > MAX_BODY:
        _invalid("body", f"Messages are at most {MAX_BODY} characters.")
    if not CHANNEL.fullmatch(channel):
        _invalid("channel", "Channels are 1-32 lowercase letters, digits, '-' or '_'.")
    return ctx.db.insert("messages", {"author": author, "body": body, "channel": channel})

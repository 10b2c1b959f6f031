"""HTTP actions: plain HTTP endpoints, served on the site port (http://127.0.0.1:3211).

curl http://127.0.0.1:3211/tasks
curl -X POST http://127.0.0.1:3211/tasks -d '{"text": "From curl"}'
"""

from syncline import HttpResponse, HttpRouter, api

http = HttpRouter()


@http.route(path="/tasks", method="GET")
async def list_tasks(ctx, request):
    tasks = await ctx.run_query(api.tasks.list)
    return HttpResponse([{"id": t["_id"], "text": t["text"], "done": t["done"]} for t in tasks])


@http.route(path="/tasks", method="POST")
async def add_task(ctx, request):
    try:
        body = await request.json()
        text = body["text"]
    except (ValueError, KeyError, TypeError):
        return HttpResponse({"error": 'Send JSON like {"text": "..."}'}, status=400)
    task_id = await ctx.run_mutation(api.tasks.add, {"text": text})
    return HttpResponse({"id": task_id}, status=201)

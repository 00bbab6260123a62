"""A small app traced by HoneyHive's ``honeyhive`` 1.x (run in its own venv by the tests), then the
README's client calls; prints what the test checks as JSON. Usage: python honeyhive1_app.py URL KEY."""

import asyncio
import json
import sys

from honeyhive import HoneyHive, HoneyHiveTracer, trace
from honeyhive.models import PostEventRequest

url, key = sys.argv[1], sys.argv[2]
tracer = HoneyHiveTracer.init(api_key=key, server_url=url, source="tests", session_name="hh1-app")


@trace(event_type="tool")
def retrieve(query):
    return query.upper()


@trace(event_type="chain", event_name="answer")
def answer(question):
    tracer.enrich_span(metadata={"step": "answer"}, metrics={"score": 1})
    return retrieve(question) + "!"


@trace(event_type="tool", event_name="async_step")
async def async_step(x):
    await asyncio.sleep(0)
    return x * 2


result = answer("hello")
asyncio.run(async_step(2))
with tracer.start_span("custom-operation"):
    pass
tracer.enrich_session(user_properties={"user_id": "user-123", "plan": "premium"}, metadata={"k": "v"})
flushed = tracer.flush()

client = HoneyHive(api_key=key, server_url=url)
started = client.sessions.start({"session_name": "client-session", "source": "tests"})
session_filter = {"field": "session_id", "operator": "is", "value": tracer.session_id, "type": "string"}
exported = client.events.export(filters=[session_filter], limit=100)
created = client.events.create(
    PostEventRequest(event={"event_type": "tool", "event_name": "created", "inputs": {"q": 1}})
)
client.events.update_event({"event_id": created.event_id, "metadata": {"late": True}, "duration": 42})
listed = client.events.list(query={"filters": [session_filter]})
print(
    json.dumps(
        {
            "result": result,
            "flushed": flushed,
            "session_id": tracer.session_id,
            "client_session": started.session_id,
            "client_session_project": started.project_id,
            "exported": exported.total_events,
            "exported_names": sorted(e.event_name for e in exported.events),
            "listed": listed.totalEvents,
            "created_id": created.event_id,
        }
    )
)

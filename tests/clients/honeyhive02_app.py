"""A small app traced by HoneyHive's ``honeyhive`` 0.2.x (Traceloop-based; run in its own venv by
the tests), then the README's client calls; prints what the test checks as JSON.
Usage: python honeyhive02_app.py URL KEY."""

import json
import sys

from honeyhive import HoneyHive, HoneyHiveTracer, enrich_session, enrich_span, trace

url, key = sys.argv[1], sys.argv[2]
tracer = HoneyHiveTracer.init(api_key=key, project="p02", server_url=url, source="tests", session_name="hh02-app")


@trace(event_type="tool")
def retrieve(query):
    return query.upper()


@trace(event_type="chain", event_name="answer")
def answer(question):
    enrich_span(metadata={"step": "answer"}, metrics={"score": 1})
    return retrieve(question) + "!"


result = answer("hello")
enrich_session(metadata={"k": "v"}, user_properties={"user": "u-1"})
HoneyHiveTracer.flush()

s = HoneyHive(bearer_auth=key, server_url=url)
started = s.session.start_session(
    request={
        "session": {
            "project": "Simple RAG Project",
            "session_name": "Playground Session",
            "source": "playground",
            "inputs": {"context": "Hello world", "question": "What is in the context?"},
            "outputs": {"role": "assistant", "content": "Hello world"},
            "duration": 824.8056,
            "user_properties": {"user": "google-oauth2|111840237613341303366"},
            "start_time": 1712025501605,
        }
    }
)
got = s.session.get_session(session_id=tracer.session_id)
events = s.events.get_events(
    request={
        "project": "p02",
        "filters": [{"field": "session_id", "operator": "is", "value": tracer.session_id, "type": "string"}],
    }
)
model = s.events.create_model_event(
    request={
        "model_event": {
            "project": "p02",
            "model": "gpt-4o",
            "provider": "openai",
            "messages": [{"role": "user", "content": "hi"}],
            "response": {"role": "assistant", "content": "hello"},
            "duration": 42,
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }
    }
)
plain = {"project": "p02", "source": "tests", "event_type": "tool", "config": {}, "inputs": {"q": 1}, "duration": 5}
created = s.events.create_event(request={"event": {**plain, "event_name": "created"}})
s.events.update_event(request={"event_id": created.object.event_id, "metadata": {"late": True}, "duration": 42})
batch = s.events.create_event_batch(
    request={
        "events": [{**plain, "event_name": "batched"}],
        "is_single_session": True,
        "session_properties": {"session_name": "batch-session", "source": "tests"},
    }
)
model_batch = s.events.create_model_event_batch(
    request={
        "model_events": [
            {
                "project": "p02",
                "model": "gpt-4o",
                "provider": "openai",
                "messages": [{"role": "user", "content": "hi"}],
                "response": {"role": "assistant", "content": "hello"},
                "duration": 42,
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ],
        "is_single_session": True,
    }
)
print(
    json.dumps(
        {
            "result": result,
            "session_id": tracer.session_id,
            "client_session": started.object.session_id,
            "got_session_type": str(got.event.event_type.value if got.event else None),
            "exported": events.object.total_events,
            "exported_names": sorted(e.event_name for e in events.object.events),
            "model_event_id": model.object.event_id,
            "created_id": created.object.event_id,
            "batch_ids": batch.object.event_ids,
            "model_batch_ids": model_batch.object.event_ids,
        }
    )
)

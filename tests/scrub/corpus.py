# ruff: noqa: E501  (a data file: credential shapes and sample values read best on one line each)
"""A corpus for measuring secret scrubbing end to end (synthetic data only, never real credentials).

- ``credentials()``: correctly shaped, random credentials of 36 kinds (right prefixes, lengths,
  charsets; the parts a rule checks, such as OpenAI's ``T3BlbkFJ`` marker or a Basic header's
  ``user:password``, are there). Each comes as the *carrier* placed in an event (a URL, a header
  value, a key) and the *secret* parts that must never reach the wire.
- ``PLACEMENTS``: 30 ways a value reaches an event (under secret keys of every spelling, neutral
  keys, free text, lists, positional arguments, exception messages and tracebacks, metadata,
  session properties, late updates, the mask hook's output...). Every placement runs through a
  real ``Tracer`` and the check reads the exported bytes (events, session properties and
  ``PUT /events`` bodies as sent).
- ``benign()``: ordinary keys and values an LLM app records (the false-positive corpus).

``python -m tests.scrub.corpus`` prints the rates (used for the README); it uses the public API
only, so it also measures other versions of the library.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import random
import string
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import orjson

import tracer
from tracer import InMemoryExporter, Tracer
from tracer.exporters import Batch

REDACTED = "[REDACTED]"
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"


@dataclasses.dataclass(frozen=True)
class Credential:
    kind: str
    carrier: str  # what the app holds and may pass around (a key, a URL, a header value...)
    secrets: tuple[str, ...]  # the parts that must not appear in the exported bytes


def _pick(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def _mixed(rng: random.Random, alphabet: str, size: int) -> str:
    """Random, with at least one upper, lower and digit (as real random keys have, to near certainty)."""
    while True:
        text = _pick(rng, alphabet, size)
        if any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text):
            return text


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _password(rng: random.Random) -> str:
    return _mixed(rng, ALNUM + "_!*~", 18)


def _pem(rng: random.Random, label: str) -> Credential:
    lines = [_pick(rng, B64, 64) for _ in range(8)] + [_pick(rng, B64, 40) + "=="]
    body = "\n".join(lines)
    return Credential(
        f"pem-{label.split()[0].lower()}",
        f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n",
        tuple(lines),
    )


def _jwt(rng: random.Random) -> str:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {
        "sub": _pick(rng, string.digits, 10),
        "name": "Test User",
        "iat": rng.randrange(1_600_000_000, 1_800_000_000),
    }
    payload = _b64url(json.dumps(claims).encode())
    signature = _b64url(bytes(rng.randrange(256) for _ in range(32)))
    return f"{header}.{payload}.{signature}"


def credentials(seed: int) -> list[Credential]:
    """One credential of each kind, drawn with *seed*."""
    rng = random.Random(seed)
    pw = [_password(rng) for _ in range(6)]
    account_key = base64.b64encode(bytes(rng.randrange(256) for _ in range(64))).decode()
    sas_sig = base64.b64encode(bytes(rng.randrange(256) for _ in range(32))).decode()
    sas_sig_q = sas_sig.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    webhook = _pick(rng, ALNUM, 24)
    basic_user_pass = f"svc-{_pick(rng, string.ascii_lowercase, 6)}:{pw[5]}"
    basic = base64.b64encode(basic_user_pass.encode()).decode()
    bearer = _mixed(rng, URLSAFE + ".", 40)
    jwt = _jwt(rng)
    creds = [
        Credential("openai-legacy", t := "sk-" + _mixed(rng, ALNUM, 20) + "T3BlbkFJ" + _mixed(rng, ALNUM, 20), (t,)),
        Credential(
            "openai-project", t := "sk-proj-" + _mixed(rng, URLSAFE, 58) + "T3BlbkFJ" + _mixed(rng, URLSAFE, 58), (t,)
        ),
        Credential(
            "openai-svcacct",
            t := "sk-svcacct-" + _mixed(rng, URLSAFE, 74) + "T3BlbkFJ" + _mixed(rng, URLSAFE, 74),
            (t,),
        ),
        Credential("anthropic", t := "sk-ant-api03-" + _mixed(rng, URLSAFE, 93) + "AA", (t,)),
        Credential("anthropic-admin", t := "sk-ant-admin01-" + _mixed(rng, URLSAFE, 93) + "AA", (t,)),
        Credential("aws-access-key-id", t := "AKIA" + _pick(rng, UPPER_ALNUM, 16), (t,)),
        Credential("aws-temporary-key-id", t := "ASIA" + _pick(rng, UPPER_ALNUM, 16), (t,)),
        Credential("aws-secret-access-key", t := _mixed(rng, B64, 40), (t,)),
        Credential("github-pat", t := "ghp_" + _mixed(rng, ALNUM, 36), (t,)),
        Credential("github-oauth", t := "gho_" + _mixed(rng, ALNUM, 36), (t,)),
        Credential("github-app", t := "ghs_" + _mixed(rng, ALNUM, 36), (t,)),
        Credential(
            "github-fine-grained", t := "github_pat_" + _mixed(rng, ALNUM, 22) + "_" + _mixed(rng, ALNUM, 59), (t,)
        ),
        Credential("gitlab-pat", t := "glpat-" + _mixed(rng, URLSAFE, 20), (t,)),
        Credential(
            "slack-bot",
            t := f"xoxb-{_pick(rng, string.digits, 12)}-{_pick(rng, string.digits, 13)}-{_mixed(rng, ALNUM, 24)}",
            (t,),
        ),
        Credential(
            "slack-user",
            t
            := f"xoxp-{_pick(rng, string.digits, 12)}-{_pick(rng, string.digits, 12)}-{_pick(rng, string.digits, 13)}-{_pick(rng, HEX, 32)}",
            (t,),
        ),
        Credential(
            "slack-webhook",
            f"https://hooks.slack.com/services/T{_pick(rng, UPPER_ALNUM, 10)}/B{_pick(rng, UPPER_ALNUM, 10)}/{webhook}",
            (webhook,),
        ),
        Credential("google-api-key", t := "AIza" + _mixed(rng, URLSAFE, 35), (t,)),
        Credential("huggingface", t := "hf_" + _pick(rng, string.ascii_letters, 34), (t,)),
        Credential("stripe-secret", t := "sk_live_" + _mixed(rng, ALNUM, 99), (t,)),
        Credential("stripe-restricted", t := "rk_live_" + _mixed(rng, ALNUM, 99), (t,)),
        _pem(rng, "RSA PRIVATE KEY"),
        _pem(rng, "OPENSSH PRIVATE KEY"),
        _pem(rng, "EC PRIVATE KEY"),
        Credential("jwt", jwt, (jwt,)),
        Credential("basic-auth-header", f"Basic {basic}", (basic, basic_user_pass)),
        Credential("bearer-header", f"Bearer {bearer}", (bearer,)),
        Credential(
            "azure-storage-connection-string",
            f"DefaultEndpointsProtocol=https;AccountName=acct{_pick(rng, HEX, 6)};AccountKey={account_key};EndpointSuffix=core.windows.net",
            (account_key,),
        ),
        Credential(
            "azure-sas-url",
            f"https://acct{_pick(rng, HEX, 6)}.blob.core.windows.net/docs/report.pdf?sv=2022-11-02&ss=b&srt=o&sp=r"
            f"&se=2026-01-01T00:00:00Z&spr=https&sig={sas_sig_q}",
            (sas_sig_q, sas_sig),
        ),
        Credential("postgres-url", f"postgres://app_user:{pw[0]}@db.internal.example:5432/prod", (pw[0],)),
        Credential(
            "mongodb-srv-url",
            f"mongodb+srv://reporting:{pw[1]}@cluster0.ab1cd.mongodb.net/analytics?retryWrites=true",
            (pw[1],),
        ),
        Credential("redis-url", f"rediss://default:{pw[2]}@cache.internal.example:6380/0", (pw[2],)),
        Credential(
            "adonet-connection-string",
            f"Server=tcp:sql-prod.database.windows.net,1433;Initial Catalog=orders;User ID=app;Password={pw[3]};Encrypt=True;",
            (pw[3],),
        ),
        Credential("twilio-api-key", t := "SK" + _pick(rng, HEX, 32), (t,)),
        Credential("sendgrid", t := "SG." + _mixed(rng, URLSAFE, 22) + "." + _mixed(rng, URLSAFE, 43), (t,)),
        Credential("npm", t := "npm_" + _mixed(rng, ALNUM, 36), (t,)),
        Credential("pypi", t := "pypi-AgEIcHlwaS5vcmc" + _mixed(rng, URLSAFE, 70), (t,)),
        Credential("databricks", t := "dapi" + _pick(rng, HEX, 32), (t,)),
        Credential("groq", t := "gsk_" + _mixed(rng, ALNUM, 52), (t,)),
        Credential("dotenv-password-line", f"DB_PASS={pw[4]}", (pw[4],)),
    ]
    return creds


# -- placements -------------------------------------------------------------------------------------


class WireExporter(InMemoryExporter):
    """An ``InMemoryExporter`` that also keeps the bytes as sent: events, session properties, updates."""

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[bytes] = []

    def export(self, batch: Batch) -> bool:
        self.wire.extend(batch.encoded)
        self.wire.append(orjson.dumps(batch.sessions))
        self.wire.append(orjson.dumps(batch.updates))
        return super().export(batch)

    def clear(self) -> None:
        super().clear()
        self.wire.clear()


@dataclasses.dataclass(frozen=True)
class Placement:
    name: str
    run: Callable[[Tracer, str], None]
    needs: str = "plain"  # "plain" | "mask" | "batch": which tracer it runs on


def _call(t: Tracer, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return t.trace(event_name="probe")(fn)(*args, **kwargs)


def _echo(*args: Any, **kwargs: Any) -> None:
    return None


def _returns(value: Any) -> Callable[[], Any]:
    def fn() -> Any:
        return value

    return fn


def _raise(message: str) -> None:
    raise ValueError(message)


def _in_exception(t: Tracer, carrier: str) -> None:
    with contextlib.suppress(ValueError):
        _call(t, _raise, f"connection failed using {carrier}")


def _in_nested_exception(t: Tracer, carrier: str) -> None:
    def inner() -> None:
        try:
            raise KeyError(carrier)
        except KeyError as exc:
            raise RuntimeError("lookup failed") from exc

    with contextlib.suppress(RuntimeError):
        _call(t, inner)


def _enrich(**fields: Any) -> Callable[[Tracer, str], None]:
    def run(t: Tracer, carrier: str) -> None:
        def work() -> None:
            t.enrich_span(**{name: {key: carrier} for name, key in fields.items()})

        _call(t, work)

    return run


def _late_update(t: Tracer, carrier: str) -> None:
    with t.span("probe") as span:
        pass
    span.update(metadata={"note": carrier})


def _session_properties(t: Tracer, carrier: str) -> None:
    with t.session("probe-session", metadata={"deploy": carrier}, user_properties={"note": carrier}):
        _call(t, _echo)


def _event_name(t: Tracer, carrier: str) -> None:
    with t.span(f"call with {carrier}"):
        pass


@dataclasses.dataclass
class _Settings:
    note: str


def _header(carrier: str) -> str:
    return carrier if carrier.startswith(("Bearer ", "Basic ")) else f"Bearer {carrier}"


PLACEMENTS: tuple[Placement, ...] = (
    Placement("key-snake", lambda t, c: _call(t, _echo, config={"api_key": c})),
    Placement("key-camel", lambda t, c: _call(t, _echo, config={"apiKey": c})),
    Placement("key-screaming", lambda t, c: _call(t, _echo, env={"OPENAI_API_KEY": c})),
    Placement("key-kebab", lambda t, c: _call(t, _echo, headers={"x-api-key": c})),
    Placement("key-password", lambda t, c: _call(t, _echo, db={"DB_PASS": c})),
    Placement("key-access-token-camel", lambda t, c: _call(t, _echo, auth={"accessToken": c})),
    Placement("parameter-named-secret", lambda t, c: _call(t, lambda client_secret: None, c)),
    Placement("neutral-key", lambda t, c: _call(t, _echo, payload={"value": c})),
    Placement("free-text", lambda t, c: _call(t, _echo, f"Please use the credential {c} for the nightly job, thanks.")),
    Placement("list-item", lambda t, c: _call(t, _echo, items=["first", c, "last"])),
    Placement("positional-argument", lambda t, c: _call(t, lambda data: None, c)),
    Placement("output", lambda t, c: _call(t, _returns(c))),
    Placement("output-nested-deep", lambda t, c: _call(t, _returns({"a": {"b": {"c": [{"d": {"e": c}}]}}}))),
    Placement("exception-message", _in_exception),
    Placement("chained-exception-traceback", _in_nested_exception),
    Placement("metadata-enrich-span", _enrich(metadata="note")),
    Placement("config-feedback-metrics", _enrich(config="endpoint", feedback="comment", user_properties="profile")),
    Placement(
        "url-query-string",
        lambda t, c: _call(t, _echo, url=f"https://api.example.com/v1/search?q=llm&api_key={c}&page=2"),
    ),
    Placement("authorization-header", lambda t, c: _call(t, _echo, headers={"Authorization": _header(c)})),
    Placement(
        "http-request-text",
        lambda t, c: _call(t, _echo, f"POST /v1/chat HTTP/1.1\r\nHost: api\r\nAuthorization: {_header(c)}\r\n\r\n"),
    ),
    Placement("json-in-string", lambda t, c: _call(t, _echo, body=json.dumps({"settings": {"value": c}}))),
    Placement("json-in-json-string", lambda t, c: _call(t, _echo, body=json.dumps(json.dumps({"value": c})))),
    Placement("dict-repr-in-string", lambda t, c: _call(t, _echo, log=str({"value": c, "n": 1}))),
    Placement("bytes-argument", lambda t, c: _call(t, _echo, raw=c.encode())),
    Placement("dataclass-field", lambda t, c: _call(t, _echo, settings=_Settings(note=c))),
    Placement("markdown-code-block", lambda t, c: _call(t, _returns(f"Here is your config:\n```\n{c}\n```\nDone."))),
    Placement("session-properties", _session_properties),
    Placement("late-update", _late_update),
    Placement("event-name", _event_name),
    Placement("mask-hook-output", lambda t, c: _call(t, _echo, note=c), needs="mask"),
    Placement(
        "background-pipeline", lambda t, c: _call(t, _echo, f"token for the job: {c}", {"value": c}), needs="batch"
    ),
)


def _mask_adding_copy(event: dict[str, Any]) -> dict[str, Any]:
    # A mask that moves an input into metadata: what it returns is scrubbed too.
    event["metadata"]["copied"] = event["inputs"].get("note")
    event["inputs"] = {}
    return event


@dataclasses.dataclass
class Tracers:
    exporters: dict[str, WireExporter]
    tracers: dict[str, Tracer]

    @classmethod
    def open(cls, **options: Any) -> Tracers:
        exporters = {need: WireExporter() for need in ("plain", "mask", "batch")}
        tracers = {
            "plain": Tracer(project="scrub", source="test", exporter=exporters["plain"], batch=False, **options),
            "mask": Tracer(
                project="scrub",
                source="test",
                exporter=exporters["mask"],
                batch=False,
                mask=_mask_adding_copy,
                **options,
            ),
            "batch": Tracer(project="scrub", source="test", exporter=exporters["batch"], batch=True, **options),
        }
        return cls(exporters, tracers)

    def close(self) -> None:
        for t in self.tracers.values():
            t.shutdown(5.0)

    def wire(self, placement: Placement, carrier: str) -> bytes:
        """The bytes exported for *carrier* in *placement*."""
        exporter = self.exporters[placement.needs]
        t = self.tracers[placement.needs]
        exporter.clear()
        placement.run(t, carrier)
        assert t.flush(10.0)
        return b"\n".join(exporter.wire)


def leaks(wire: bytes, credential: Credential) -> list[str]:
    """The secret parts of *credential* found in *wire* (as sent, or JSON-escaped once more)."""
    text = wire.decode()
    found = []
    for secret in credential.secrets:
        escaped = json.dumps(secret)[1:-1]
        if secret in text or escaped in text:
            found.append(secret)
    return found


@dataclasses.dataclass
class Result:
    placement: str
    total: int
    misses: list[str]

    @property
    def rate(self) -> float:
        return 1 - len(self.misses) / self.total


def measure_redaction(seeds: range = range(1), **options: Any) -> list[Result]:
    """Per placement: how many credentials (of every kind, for every seed) left no trace on the wire."""
    tracers = Tracers.open(**options)
    results = []
    try:
        corpus = [credential for seed in seeds for credential in credentials(seed)]
        for placement in PLACEMENTS:
            misses = [
                credential.kind
                for credential in corpus
                if leaks(tracers.wire(placement, credential.carrier), credential)
            ]
            results.append(Result(placement.name, len(corpus), misses))
    finally:
        tracers.close()
    return results


# -- the false-positive corpus ------------------------------------------------------------------------

BENIGN_KEYS: tuple[str, ...] = (
    # describe a secret without holding one (the list and their kin)
    "next_page_token", "nextPageToken", "page_token", "continuation_token", "secretary", "cookie_consent",
    "cookieConsent", "has_api_key", "hasApiKey", "api_key_configured", "API_KEY_CONFIGURED", "password_min_length",
    "passwordMinLength", "private_key_path", "privateKeyPath", "secret_name", "secretName", "is_secret",
    "api_key_id", "api_key_name", "credentials_file", "token_type", "token_count", "token_limit", "auth_type",
    "auth_url", "token_url", "password_reset_url", "password_policy", "secret_arn", "key_id", "use_auth",
    "requires_password", "password_length", "password_strength", "cookie_policy", "cookie_domain", "api_key_env_var",
    "secret_version", "signature_version", "auth_method", "auth_provider", "credential_id", "session_id", "sessionId",
    # LLM request / response fields
    "max_tokens", "max_completion_tokens", "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
    "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_tokens", "cached_tokens",
    "tokens", "num_tokens", "tokens_per_second", "stop_sequences", "eos_token", "pad_token", "bos_token",
    "tokenizer", "tokenizer_name", "model", "temperature", "top_p", "stop_reason", "finish_reason", "logprob",
    "system_fingerprint", "tool_choice", "response_format", "api_version", "api_base", "api_type", "base_url",
    # ordinary words that contain a secret word's letters
    "key", "keys", "primary_key", "cache_key", "sort_key", "partition_key", "public_key", "keyboard", "monkey",
    "keywords", "author", "authors", "authored_by", "authentication", "passage", "compass", "bypass", "pass_rate",
    "pass@1", "first_pass", "passenger", "passed", "passing", "signal", "design", "designation", "tokenized",
    "secretariat", "cookbook", "credit", "credits", "PWD", "HOME", "user", "username", "email",
)  # fmt: skip

BENIGN_TEXTS: tuple[str, ...] = (
    "The bearer of this letter is authorized to collect the parcel.",
    "Bearer bonds were popular in the nineteenth century.",
    "Our password policy requires at least 12 characters and one digit.",
    "Please reset your password from the settings page.",
    "The response used 1,024 prompt tokens and 256 completion tokens.",
    "Token limit reached: 8192 tokens maximum for this model.",
    "Each token costs $0.000002 with this model.",
    "A basic understanding of statistics helps here.",
    "Basic authentication is deprecated; use OAuth instead.",
    "The secret to good bread is patience.",
    "Keep your API keys in a secret manager, never in code.",
    "The key points of the meeting are summarized below.",
    "Pass the salt, please.",
    "She passed the exam on her first pass.",
    "Use the compass to find north.",
    "This passage was authored by three people.",
    "We added a cookie consent banner to the site.",
    "Credentials are loaded from the environment at start-up.",
    "Authentication failed: invalid username or password.",
    "Set OPENAI_API_KEY in your environment before running.",
    "api_key = os.environ['OPENAI_API_KEY']",
    "password = getpass.getpass()",
    "token = get_token(user)",
    "def get_api_key(): return settings.API_KEY",
    "if not has_api_key: raise ValueError('missing key')",
    "The Asia-Pacific region grew 4% this quarter.",
    "Ask the task-force about the risk-free rate.",
    "Desk-top publishing was big in the 1990s.",
    "Run `pip install scikit-learn` first.",
    "The eyJ prefix marks base64-encoded JSON.",
    "Try `curl https://api.example.com/v1/models` to list models.",
    "Visit https://user@example.com/profile for details.",
    "Connect to postgres://db.internal:5432/app (no password, uses IAM).",
    "Mount /var/lib/data/passwords/README.md read-only.",
    "The monkey typed on the keyboard.",
    "A ghost story set in Asia.",
    "Pass@1 improved from 0.62 to 0.71.",
    "Tokenization splits text into tokens.",
    "Secretary of State announced the policy.",
    "skip-gram models learn embeddings",
    "The sk-learn typo should be sklearn.",
    "Our SLA: 99.9% uptime, support via email.",
    "Error: connection refused (host=db port=5432)",
    "Timeout after 30s waiting for the token endpoint.",
    "Hello! How can I help you today?",
    "Summarize the following article in three bullet points.",
    "You are a helpful assistant that answers concisely.",
    "The capital of France is Paris.",
    "Translate 'good morning' into Spanish: buenos días.",
    "Write a haiku about autumn leaves.",
)  # fmt: skip


def _benign_values(rng: random.Random) -> Iterator[str]:
    import hashlib
    import uuid

    for index in range(20):
        yield str(uuid.UUID(int=rng.getrandbits(128), version=4))
        yield hashlib.sha1(f"commit {index}".encode()).hexdigest()  # git SHAs
        yield hashlib.sha256(f"file {index}".encode()).hexdigest()
        yield hashlib.md5(f"etag {index}".encode()).hexdigest()
    png_head = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    for index in range(10):
        blob = base64.b64encode(bytes(rng.randrange(256) for _ in range(300 + index))).decode()
        yield f"data:image/png;base64,{png_head}{blob}"
    for _ in range(10):
        yield f"chatcmpl-{_mixed(rng, ALNUM, 29)}"
        yield f"msg_01{_mixed(rng, ALNUM, 22)}"
        yield f"file-{_mixed(rng, ALNUM, 24)}"
        yield f"call_{_mixed(rng, ALNUM, 24)}"
        yield f"req_{_mixed(rng, ALNUM, 24)}"
        yield f"fp_{_pick(rng, HEX, 10)}"
    yield from (
        "gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "text-embedding-3-small", "mistral-large-latest",
        "/home/app/.config/app/settings.toml", "C:\\Users\\dev\\Documents\\report.docx", "/usr/lib/python3.11/site-packages",
        "/var/lib/secrets/db-password.txt", "./private_keys/id_rsa.pub", "s3://bucket/data/2024/01/part-0000.parquet",
        "https://api.openai.com/v1/chat/completions", "https://example.com:8443/path?query=1&page=2",
        "https://user@github.com/org/repo.git", "http://localhost:8080/health", "mailto:support@example.com",
        "2024-05-01T12:34:56Z", "Asia/Tokyo", "+1 (555) 010-9999", "v1.2.3-beta.4", "ISBN 978-3-16-148410-0",
        "SELECT id, name FROM users WHERE email = %s", "{\"role\": \"user\", \"content\": \"hi\"}",
        "<div class=\"key\">value</div>", "ERROR 1045 (28000): Access denied for user 'app'@'10.0.0.4'",
        "Bearer", "Basic", "token", "password", "secret", "key=value", "pass", "n/a",
    )  # fmt: skip


def benign(seed: int = 0) -> list[tuple[str, Any]]:
    """``(label, value)`` pairs: every one should come out of a traced call unchanged."""
    rng = random.Random(seed)
    items: list[tuple[str, Any]] = [(f"key {key}", {key: "ordinary value"}) for key in BENIGN_KEYS]
    items += [(f"text {text[:40]}", text) for text in BENIGN_TEXTS]
    items += [(f"value {value[:40]}", value) for value in _benign_values(rng)]
    items += [
        ("openai request", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 256, "temperature": 0.2}),
        ("openai usage", {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42, "prompt_tokens_details": {"cached_tokens": 0}}),
        ("anthropic usage", {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 0}),
        ("logprobs", {"content": [{"token": "Hello", "logprob": -0.01, "top_logprobs": []}]}),
        ("tool call", {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}),
    ]  # fmt: skip
    return items


def measure_false_positives(**options: Any) -> tuple[int, list[str]]:
    """(items, labels of the items that came out changed) over ``benign()``."""
    exporter = InMemoryExporter()
    t = Tracer(project="scrub", source="test", exporter=exporter, batch=False, **options)
    changed = []
    try:
        items = benign()
        for label, value in items:
            exporter.clear()
            _call(t, _returns(value))
            if exporter.events[0]["outputs"]["result"] != value:
                changed.append(label)
    finally:
        t.shutdown(5.0)
    return len(items), changed


def main() -> int:
    print(f"tracer from {tracer.__file__}")
    results = measure_redaction()
    kinds = len(credentials(0))
    redacted = sum(r.total - len(r.misses) for r in results)
    total = sum(r.total for r in results)
    print(f"{kinds} kinds x {len(results)} placements: {redacted}/{total} redacted ({redacted / total:.1%})")
    for result in sorted(results, key=lambda r: r.rate):
        print(f"  {result.placement:30} {result.rate:7.1%}  missed: {', '.join(result.misses) or '-'}")
    items, changed = measure_false_positives()
    print(f"false positives: {len(changed)}/{items} ({len(changed) / items:.1%}): {changed}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)

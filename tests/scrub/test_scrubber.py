"""Unit tests of tracer._scrub.Scrubber, and the scrub_keys / scrub_patterns settings end to end."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer import ConfigError, InMemoryExporter, Tracer
from tracer._scrub import REDACTED, Scrubber

from .corpus import BENIGN_TEXTS, Tracers, benign, credentials, leaks

SCRUBBER = Scrubber()

SECRET_KEYS = [
    "password", "Password", "passwd", "pwd", "passphrase", "pass", "DB_PASS", "smtp_pass", "dbPassword",
    "db-password", "user password", "secret", "client_secret", "clientSecret", "CLIENT_SECRET", "token",
    "accessToken", "refreshToken", "authToken", "id_token", "AWS_SESSION_TOKEN", "x-auth-token", "api_key",
    "apiKey", "APIKey", "API_KEY", "api-key", "X-Api-Key", "apikey", "OPENAI_API_KEY", "anthropicKey",
    "openai_key", "access_key", "aws_secret_access_key", "SecretAccessKey", "private_key", "privateKey",
    "AccountKey", "session_key", "signing_key", "Authorization", "proxy-authorization", "auth", "auth_header",
    "cookie", "Cookie", "Set-Cookie", "cookies", "credentials", "creds", "sig", "signature", "jwt",
    "secret_id", "password_hash", "passwordHash", "new_password", "Ocp-Apim-Subscription-Key",
    "token_str",
]  # fmt: skip

NOT_SECRET_KEYS = [
    "next_page_token", "nextPageToken", "page_token", "secretary", "cookie_consent", "has_api_key",
    "api_key_configured", "password_min_length", "private_key_path", "secret_name", "max_tokens",
    "prompt_tokens", "completion_tokens", "tokens", "token_count", "eos_token", "key", "primary_key",
    "cache_key", "public_key", "author", "authentication", "auth_type", "auth_url", "pass@1", "first_pass",
    "pass_rate", "bypass", "compass", "session_id", "api_key_id", "signature_version", "is_secret",
    "database_url", "DATABASE_URL", "dsn", "connection_string", "PWD", "tokenizer", "user", "",
    "token_logprobs", "tokenLogprobs", "token_probs",
]  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_keys_naming_a_secret_are_secret(key: str) -> None:
    assert SCRUBBER.is_secret_key(key)


@pytest.mark.parametrize("key", NOT_SECRET_KEYS)
def test_keys_describing_or_counting_are_not(key: str) -> None:
    assert not SCRUBBER.is_secret_key(key)


def test_shapeless_values_under_secret_keys_are_redacted_end_to_end() -> None:
    # No value rule can help here ("hunter2x"): only the key, through the byte pre-filter and the
    # walk, in a dict and in name=value text.
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False)
    try:
        for key in SECRET_KEYS:
            memory.clear()
            with t.span("probe", inputs={"config": {key: "hunter2x"}, "line": f"export {key}=hunter2x"}):
                pass
            inputs = memory.events[0]["inputs"]
            assert inputs["config"] == {key: REDACTED}, key
            if " " not in key:  # a name with a space is read from its last word ('user password')
                assert "hunter2x" not in inputs["line"], key
    finally:
        t.shutdown(1.0)


def test_log_probability_tokens_are_model_output_not_credentials() -> None:
    # OpenAI's chat logprobs (and vLLM's) and google-genai's logprobs result: 'token' beside a
    # log probability is a piece of the model's text. A bare 'token' key stays a secret, and the
    # token text is still scanned for secret shapes.
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False)
    openai_logprobs = {
        "content": [
            {"token": "Hello", "logprob": -0.31, "bytes": [72, 101, 108, 108, 111], "top_logprobs": [
                {"token": " Hi", "logprob": -1.2, "bytes": [32, 72, 105]},
            ]},
            {"token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "logprob": -9.0, "bytes": None},
        ]
    }  # fmt: skip
    gemini_logprobs = {"chosen_candidates": [{"token": "Paris", "token_id": 12, "log_probability": -0.01}]}
    try:
        with t.span("probe") as span:
            span.update(outputs={"logprobs": openai_logprobs, "gemini": gemini_logprobs, "token": "hunter2x"})
        outputs = memory.events[0]["outputs"]
        first, leaked = outputs["logprobs"]["content"]
        assert first["token"] == "Hello" and first["top_logprobs"][0]["token"] == " Hi"
        assert leaked["token"] == REDACTED  # a GitHub token's shape, whatever the key
        assert outputs["gemini"]["chosen_candidates"][0]["token"] == "Paris"
        assert outputs["token"] == REDACTED
    finally:
        t.shutdown(1.0)


def test_hugging_face_token_outputs_are_model_output_not_credentials() -> None:
    # huggingface_hub's text_generation(stream=True, details=True) items and fill_mask results
    # (the fields of its TextGenerationStreamOutput and FillMaskOutputElement): the token is the
    # model's vocabulary. A 'token' holding a string with none of that beside it stays a secret,
    # and a token's text is still scanned for secret shapes.
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False)
    streamed = {
        "index": 3,
        "token": {"id": 3681, "text": " Paris", "logprob": -0.02, "special": False},
        "generated_text": None,
        "details": None,
        "top_tokens": None,
    }
    leaked = {"index": 4, "token": {"id": 1, "text": "sk-ant-api03-" + "Ab1Cd2Ef3Gh4" * 8 + "AA", "logprob": -3.0}}
    filled = [
        {"score": 0.91, "sequence": "the capital is paris.", "token": 2201, "token_str": "paris"},
        {"score": 0.02, "sequence": "the capital is lyon.", "token": 5523, "token_str": "lyon"},
    ]
    try:
        with t.span("probe") as span:
            span.update(
                outputs={"stream": [streamed, leaked], "fill_mask": filled},
                config={"token": "hunter2-but-longer", "token_str": "hunter2-again"},
            )
        event = memory.events[0]
        first, second = event["outputs"]["stream"]
        assert first["token"] == {"id": 3681, "text": " Paris", "logprob": -0.02, "special": False}
        assert second["token"]["text"] == REDACTED and second["token"]["id"] == 1
        assert [(row["token"], row["token_str"]) for row in event["outputs"]["fill_mask"]] == [
            (2201, "paris"),
            (5523, "lyon"),
        ]
        assert event["config"] == {"token": REDACTED, "token_str": REDACTED}
    finally:
        t.shutdown(1.0)


def test_decisions_are_cached_per_key() -> None:
    scrubber = Scrubber()
    assert scrubber.is_secret_key("accessToken") and not scrubber.is_secret_key("max_tokens")
    assert scrubber._keys == {"accessToken": True, "max_tokens": False}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:hunter2x@db:5432/prod", f"postgres://app:{REDACTED}@db:5432/prod"),
        ("redis://:s3cret99@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        (
            "Server=x;User ID=sa;Password=P4ss!word;Encrypt=True",
            f"Server=x;User ID=sa;Password={REDACTED};Encrypt=True",
        ),
        ("Driver={x};Uid=app;Pwd=abc123;", f"Driver={{x}};Uid=app;Pwd={REDACTED};"),
        ("AccountName=a;AccountKey=QUJDREVGR0hJSktMTU5PUA==;Suffix=y", f"AccountName=a;AccountKey={REDACTED};Suffix=y"),
        (
            "https://a.blob.core.windows.net/c?sv=2022&sp=r&sig=AbC%2Bd1%3D",
            f"https://a.blob.core.windows.net/c?sv=2022&sp=r&sig={REDACTED}",
        ),
        ("GET /x?api_key=abc123def&page=2", f"GET /x?api_key={REDACTED}&page=2"),
        ("Authorization: Bearer abc.def-123", f"Authorization: Bearer {REDACTED}"),
        ("Authorization: Token abcdef", f"Authorization: {REDACTED}"),
        ("header Bearer abcDEF123456", f"header Bearer {REDACTED}"),
        ("Basic dXNlcjpwYXNzd29yZA==", f"Basic {REDACTED}"),
        ('{"password": "two words"}', f'{{"password": "{REDACTED}"}}'),
        ("job: DB_PASS=abc123", f"job: DB_PASS={REDACTED}"),
        ("key AKIAIOSFODNN7EXAMPLE here", f"key {REDACTED} here"),
        (
            "https://hooks.slack.com/services/T0/B0/abcdefghijklmnopqrstuvwx",
            f"https://hooks.slack.com/services/{REDACTED}",
        ),
    ],
)
def test_secrets_in_text_are_replaced_in_place(text: str, expected: str) -> None:
    assert SCRUBBER.scrub_text(text) == expected


@pytest.mark.parametrize("text", BENIGN_TEXTS)
def test_ordinary_text_is_returned_as_the_same_object(text: str) -> None:
    assert SCRUBBER.scrub_text(text) is text


def test_a_private_key_cut_short_is_redacted_to_its_end() -> None:
    text = "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEvQIBADANBgkq…[truncated"
    assert SCRUBBER.scrub_text(text) == f"key: {REDACTED}"


def test_extra_keys_match_by_words_and_bang_removes_a_builtin() -> None:
    scrubber = Scrubber(extra_keys=["ssn", "customer email", "!session_key", "!Authorization"])
    assert scrubber.is_secret_key("ssn") and scrubber.is_secret_key("userSSN") and scrubber.is_secret_key("ssnValue")
    assert not scrubber.is_secret_key("ssn_count")  # describing words apply to added keys too
    assert scrubber.is_secret_key("customerEmail") and not scrubber.is_secret_key("email")
    assert not scrubber.is_secret_key("sessionKey") and not scrubber.is_secret_key("SESSION_KEY")
    assert not scrubber.is_secret_key("authorization") and scrubber.is_secret_key("api_key")
    assert scrubber.may_hold_secret(orjson.dumps({"userSSN": 1}))
    assert scrubber.scrub_text("ssn=123-45-6789 ok") == f"ssn={REDACTED} ok"


def test_extra_patterns_replace_the_match_or_its_first_group() -> None:
    scrubber = Scrubber(extra_patterns=[r"\bEMP-\d{6}\b", r"acct #(\d+)"])
    assert scrubber.scrub_text("ids EMP-123456 and acct #9876 done") == f"ids {REDACTED} and acct #{REDACTED} done"
    assert scrubber.may_hold_secret(b'{"a": 1}')  # a user's regex has no keyword: always checked
    assert scrubber.hinted([b"1", b"2"]) == {0, 1}


# -- the byte pre-filter --------------------------------------------------------------------------------

WORDS = [
    "api", "key", "access", "token", "tokens", "secret", "password", "pass", "pwd", "auth", "cookie", "private",
    "session", "client", "max", "next", "page", "has", "path", "name", "count", "db", "user", "openai", "id",
    "sig", "signature", "creds", "first", "prompt", "x", "1", "url", "value", "is", "config",
    "authorization", "author", "string", "s", "izer", "apikey", "hash", "tokens", "passphrase", "bearer",
]  # fmt: skip


@st.composite
def keys(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
    style = draw(st.sampled_from(["snake", "camel", "screaming", "kebab", "space", "dot", "glued", "pascal", "odd"]))
    if style == "camel":
        return words[0] + "".join(word.capitalize() for word in words[1:])
    if style == "pascal":
        return "".join(word.capitalize() for word in words)
    if style == "odd":  # any other separators, runs of them, punctuation around
        separator = draw(st.sampled_from(["@", "/", ":", "__", " - ", "é", "$"]))
        return (
            draw(st.sampled_from(["", "_", "$"])) + separator.join(words) + draw(st.sampled_from(["", "!", "_", " "]))
        )
    joined = {"snake": "_", "screaming": "_", "kebab": "-", "space": " ", "dot": ".", "glued": ""}[style].join(words)
    return joined.upper() if style == "screaming" else joined


@settings(max_examples=1500, deadline=None)
@given(keys())
def test_every_secret_key_passes_the_byte_prefilter(key: str) -> None:
    # The pre-filter may only say "nothing here" when is_secret_key would find nothing.
    if SCRUBBER.is_secret_key(key):
        for data in ({key: 1}, {"nested": [{key: "v"}]}, f"{key}=v", f"{key}: v", json.dumps({key: "v"})):
            assert SCRUBBER.may_hold_secret(orjson.dumps(data)), (key, data)


@pytest.mark.parametrize("seed", range(3))
def test_every_corpus_credential_passes_the_byte_prefilter(seed: int) -> None:
    for credential in credentials(seed):
        for data in (credential.carrier, f"x\n{credential.carrier}\ty", {"v": [credential.carrier]}):
            assert SCRUBBER.may_hold_secret(orjson.dumps(data)), (credential.kind, data)


def test_hinted_flags_exactly_the_chunks_holding_a_secret() -> None:
    secrets = [orjson.dumps({"v": c.carrier}) for c in credentials(1)]
    plain = [orjson.dumps({"text": text, "max_tokens": 5}) for text in BENIGN_TEXTS if "key" not in text.lower()]
    rng = random.Random(3)
    chunks = secrets + plain[: len(secrets)]
    rng.shuffle(chunks)
    hinted = SCRUBBER.hinted(chunks)
    assert {i for i, chunk in enumerate(chunks) if chunk in secrets} <= hinted
    assert SCRUBBER.hinted([]) == set()


def test_usual_llm_events_do_not_wake_the_scrubber() -> None:
    # The point of the pre-filter: a model event's usual fields never match it.
    event = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "hi"}],
        "max_tokens": 256,
        "max_completion_tokens": 256,
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        "details": {"prompt_tokens_details": {"cached_tokens": 0}, "reasoning_tokens": 0},
        "id": "chatcmpl-9xYz", "system_fingerprint": "fp_44709d6fcb", "finish_reason": "stop",
        "anthropic": {"stop_reason": "end_turn", "input_tokens": 1, "output_tokens": 2},
        "cache": {"cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
    }  # fmt: skip
    assert not SCRUBBER.may_hold_secret(orjson.dumps(event))


def test_prefilter_rate_on_the_benign_corpus_is_low() -> None:
    # Measured and reported in the README: how often ordinary values get decoded and walked.
    items = [value for _, value in benign()]
    woken = [value for value in items if SCRUBBER.may_hold_secret(orjson.dumps(value))]
    assert len(woken) / len(items) < 0.5, len(woken)


# -- hostile input ----------------------------------------------------------------------------------------

MB = 1 << 20
HOSTILE = [
    "a" * MB,
    "a=" * (MB // 2),
    "a: " * (MB // 3),
    "password=" * (MB // 9),
    "-----BEGIN RSA PRIVATE KEY-----" * (MB // 31),
    "-----BEGIN PRIVATE KEY-----" + "-" * MB,
    "sk-" + "a" * MB,
    "x://" + "a" * MB,
    "x://a:" * (MB // 6),
    "x://" + ":" * MB,
    "eyJ" + "a" * MB + ".",
    "eyJaaaaaaaaaaaa.eyJ" * (MB // 20),
    "Bearer " * (MB // 7),
    "Basic " + "A" * MB,
    "A" * MB,
    "aB1/" * (MB // 4),
    "hooks.slack.com/services/" + "a" * MB,
    "AKIA" * (MB // 4),
    '"password": "' * (MB // 13),
    "ey" * (MB // 2),
    "key" * (MB // 3),
    "api key " * (MB // 8),
    "pass" + " " * MB,
    "password" + " " * MB + "x",
    "sk-" * (MB // 3),
    "SG." * (MB // 3),
    "a." * (MB // 2),
    "(" * MB,
]


@pytest.mark.timeout(120)  # a hang guard, not a performance assertion: a quadratic pass takes hours
@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: repr(text[:24]))
def test_every_rule_is_linear_on_hostile_megabyte_strings(text: str) -> None:
    SCRUBBER.scrub_text(text)
    SCRUBBER.may_hold_secret(text.encode())
    SCRUBBER.hinted([text.encode(), b"{}"])


# -- settings ---------------------------------------------------------------------------------------------


def test_scrub_keys_and_patterns_settings_end_to_end() -> None:
    memory = InMemoryExporter()
    t = Tracer(exporter=memory, batch=False, scrub_keys=["ssn", "!session_key"], scrub_patterns=[r"\bEMP-\d{6}\b"])
    try:
        with t.span("probe", inputs={"userSSN": "123-45-6789", "session_key": "kept", "note": "by EMP-123456"}):
            pass
        assert memory.events[0]["inputs"] == {"userSSN": REDACTED, "session_key": "kept", "note": f"by {REDACTED}"}
    finally:
        t.shutdown(1.0)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_SCRUB_KEYS", " ssn , !session_key,")
    monkeypatch.setenv("TRACER_SCRUB_PATTERNS", "EMP-\\d{6}\nacct, #(\\d+)\n")
    t = Tracer(exporter=InMemoryExporter(), batch=False)
    try:
        assert t.config.scrub_keys == ("ssn", "!session_key")
        assert t.config.scrub_patterns == ("EMP-\\d{6}", "acct, #(\\d+)")
    finally:
        t.shutdown(1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scrub_patterns": ["ok", "(unclosed"]}, "setting 'scrub_patterns' holds an invalid regular expression"),
        ({"scrub_patterns": "a\n[z-a]"}, "setting 'scrub_patterns' holds an invalid regular expression"),
        ({"scrub_keys": 3}, "setting 'scrub_keys' must be a list of strings"),
        ({"scrub_keys": ["ok", 3]}, "setting 'scrub_keys' must hold strings only"),
    ],
)
def test_invalid_scrub_settings_fail_at_init(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Tracer(exporter=InMemoryExporter(), batch=False, **options)


def test_invalid_pattern_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_SCRUB_PATTERNS", "(")
    with pytest.raises(ConfigError, match="TRACER_SCRUB_PATTERNS"):
        Tracer(exporter=InMemoryExporter(), batch=False)


# -- property: a planted secret never reaches the wire ------------------------------------------------------

PLANTED = credentials(11)


def _plant(value: Any, path: list[int], secret: str) -> Any:
    if not path:
        return secret
    step, rest = path[0], path[1:]
    if isinstance(value, dict) and value:
        key = sorted(value)[step % len(value)]
        return {**value, key: _plant(value[key], rest, secret)}
    if isinstance(value, list) and value:
        index = step % len(value)
        return [*value[:index], _plant(value[index], rest, secret), *value[index + 1 :]]
    if isinstance(value, str):
        return f"{value} {secret} {value}" if step % 2 else secret
    return secret


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="abcdef xyz:=,;", max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "value", "text", "items", "data", "config", "max_tokens"]), children, max_size=3
        )
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def tracers() -> Iterator[Tracers]:
    opened = Tracers.open()
    yield opened
    opened.close()


@settings(max_examples=150, deadline=None)
@given(
    value=json_values,
    path=st.lists(st.integers(0, 5), max_size=5),
    index=st.integers(0, len(PLANTED) - 1),
    where=st.sampled_from(["argument", "output", "metadata", "error", "late", "session"]),
)
def test_a_planted_secret_never_reaches_the_wire(
    tracers: Tracers, value: Any, path: list[int], index: int, where: str
) -> None:
    credential = PLANTED[index]
    planted = _plant(value, path, credential.carrier)
    exporter = tracers.exporters["plain"]
    t = tracers.tracers["plain"]
    exporter.clear()
    if where == "argument":
        t.trace(lambda data: None)(planted)
    elif where == "output":
        t.trace(lambda: planted)()
    elif where == "metadata":
        with t.span("probe", metadata={"x": planted}):
            pass
    elif where == "error":
        with pytest.raises(RuntimeError), t.span("probe"):
            raise RuntimeError(str(planted))
    elif where == "late":
        with t.span("probe") as span:
            pass
        span.update(outputs={"x": planted})
    else:
        with t.session("s", metadata={"x": planted}), t.span("probe"):
            pass
    assert t.flush(5.0)
    assert leaks(b"\n".join(exporter.wire), credential) == [], (credential.kind, planted)

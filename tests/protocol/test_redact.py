"""Secret scrubbing: a corpus of credential shapes, ordinary text left alone, and
the pre-check never letting through a text the full patterns would change.

Every secret here is fake and built at run time from parts and a seeded
random generator, so the repository holds nothing a secret scanner would flag.
``CORPUS`` is shared with ``tests/daemon/test_secrets.py``.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BadField
from protocol.redact import (
    _SECRET,
    MARK,
    may_hold_secret,
    payload_json_redacted,
    redact,
    redact_text,
    redact_values,
)

UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


@dataclass(frozen=True)
class Secret:
    name: str
    text: str  # a realistic line holding the secret
    core: str  # the part that must never be stored


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _pem(rng: random.Random, label: str, lines: int = 6) -> tuple[str, str]:
    body = "\n".join(_rand(rng, B64, 64) for _ in range(lines))
    dashes = "-" * 5
    block = f"{dashes}BEGIN {label}{dashes}\n{body}\n{dashes}END {label}{dashes}"
    return block, body.splitlines()[2]


def build_corpus(seed: int = 20260120) -> list[Secret]:
    """At least 40 credential shapes, each in the line where it would show up."""
    rng = random.Random(seed)
    r = _rand
    out: list[Secret] = []

    def add(name: str, text: str, core: str) -> None:
        assert core in text, name
        out.append(Secret(name, text, core))

    def token(name: str, prefix: str, body: str, template: str = "using {} now") -> None:
        add(name, template.format(prefix + body), body)

    # Cloud providers
    akia = "AK" + "IA" + r(rng, UPPER_DIGITS, 16)
    add("aws access key id", f"aws_access_key_id = {akia}", akia)
    add(
        "aws key id, bare",
        f"The AWS Access Key Id {'AS' + 'IA'}{akia[4:]} does not exist",
        akia[4:],
    )
    aws_secret = r(rng, B64, 40)
    add("aws secret access key", f"aws_secret_access_key={aws_secret}", aws_secret)
    add("aws .env line", f"AWS_SECRET_ACCESS_KEY={aws_secret[::-1]}", aws_secret[::-1])
    token("gcp api key", "AI" + "za", r(rng, URLSAFE, 35), "GET /maps/api?key={}&q=x")
    token("google oauth token", "ya" + "29.", r(rng, URLSAFE, 60))
    pem, pem_core = _pem(rng, "PRIVATE KEY")
    key_id = r(rng, HEX, 40)
    service_account = json.dumps(
        {
            "type": "service_account",
            "project_id": "demo-project",
            "private_key_id": key_id,
            "private_key": pem + "\n",
            "client_email": "ci@demo-project.iam.gserviceaccount.com",
        }
    )
    add("gcp service account json (key)", service_account, pem_core)
    add("gcp service account json (key id)", service_account, key_id)
    azure_key = r(rng, B64, 86) + "=="
    add(
        "azure storage connection string",
        "DefaultEndpointsProtocol=https;AccountName=demo;"
        f"AccountKey={azure_key};EndpointSuffix=core.windows.net",
        azure_key[:40],
    )
    storage_key = r(rng, B64, 86) + "=="
    add("azure storage key", f"AZURE_STORAGE_KEY={storage_key}", storage_key[:40])
    # Code hosting
    token("github classic pat", "gh" + "p_", r(rng, ALNUM, 36))
    token("github oauth token", "gh" + "o_", r(rng, ALNUM, 36))
    token("github app installation token", "gh" + "s_", r(rng, ALNUM, 36))
    token("github user-to-server token", "gh" + "u_", r(rng, ALNUM, 36))
    token("github refresh token", "gh" + "r_", r(rng, ALNUM, 76))
    token(
        "github fine-grained pat",
        "github" + "_pat_",
        f"11{r(rng, UPPER_DIGITS, 20)}_{r(rng, ALNUM, 59)}",
    )
    token("gitlab pat", "gl" + "pat-", r(rng, URLSAFE, 20))
    token("gitlab runner token", "gl" + "rt-", r(rng, URLSAFE, 20))
    token("gitlab deploy token", "gl" + "dt-", r(rng, URLSAFE, 20))
    # Chat
    token(
        "slack bot token",
        "xo" + "xb-",
        f"{r(rng, string.digits, 12)}-{r(rng, string.digits, 13)}-{r(rng, ALNUM, 24)}",
    )
    token(
        "slack user token",
        "xo" + "xp-",
        f"{r(rng, string.digits, 12)}-{r(rng, string.digits, 13)}-{r(rng, ALNUM, 32)}",
    )
    token(
        "slack app token",
        "xa" + "pp-1-",
        f"A{r(rng, UPPER_DIGITS, 10)}-{r(rng, string.digits, 13)}-{r(rng, HEX, 64)}",
    )
    hook = f"T{r(rng, UPPER_DIGITS, 8)}/B{r(rng, UPPER_DIGITS, 10)}/{r(rng, ALNUM, 24)}"
    add("slack webhook url", f"posting to https://hooks.slack.com/services/{hook} failed", hook)
    discord = f"M{r(rng, ALNUM, 23)}.{r(rng, URLSAFE, 6)}.{r(rng, URLSAFE, 27)}"
    add("discord bot token", f"DISCORD_BOT_TOKEN={discord}", discord)
    # LLM providers
    token("openai project key", "sk" + "-proj-", r(rng, URLSAFE, 120), "OPENAI_API_KEY={}")
    token("openai legacy key", "sk" + "-", r(rng, ALNUM, 48), "client = OpenAI(api_key='{}')")
    token("anthropic key", "sk" + "-ant-api03-", r(rng, URLSAFE, 93) + "AA")
    token("groq key", "gs" + "k_", r(rng, ALNUM, 52))
    token("huggingface token", "h" + "f_", r(rng, ALNUM, 34))
    token("xai key", "xa" + "i-", r(rng, ALNUM, 80))
    cohere = r(rng, ALNUM, 40)
    add("cohere key", f"export COHERE_API_KEY={cohere}", cohere)
    mistral = r(rng, ALNUM, 32)
    add("mistral key", f"curl -H 'Authorization: Bearer {mistral}' https://api.mistral.ai", mistral)
    # Payments and messaging
    token("stripe live secret key", "sk" + "_live_", r(rng, ALNUM, 99))
    token("stripe test secret key", "sk" + "_test_", r(rng, ALNUM, 99))
    token("stripe restricted key", "rk" + "_live_", r(rng, ALNUM, 99))
    token("twilio api key", "S" + "K", r(rng, HEX, 32))
    twilio_auth = r(rng, HEX, 32)
    add("twilio auth token", f"TWILIO_AUTH_TOKEN={twilio_auth}", twilio_auth)
    token("sendgrid key", "S" + "G.", f"{r(rng, URLSAFE, 22)}.{r(rng, URLSAFE, 43)}")
    # Package registries and hosting
    token("npm token", "np" + "m_", r(rng, ALNUM, 36), "//registry.npmjs.org/:_authToken={}")
    token("pypi token", "py" + "pi-", "AgEIcHlwaS5vcmc" + r(rng, URLSAFE, 70), "password = {}")
    token("docker hub pat", "dc" + "kr_pat_", r(rng, URLSAFE, 27))
    token("digitalocean token", "do" + "p_v1_", r(rng, HEX, 64))
    token("shopify token", "sh" + "pat_", r(rng, HEX, 32))
    # Tokens and headers
    jwt = ".".join(
        ["ey" + "J" + r(rng, URLSAFE, 30), "ey" + "J" + r(rng, URLSAFE, 60), r(rng, URLSAFE, 43)]
    )
    add("jwt", f"session cookie {jwt} expired", jwt[40:])
    bearer = r(rng, URLSAFE, 40)
    add("authorization bearer", f"Authorization: Bearer {bearer}", bearer)
    basic = r(rng, B64, 28) + "=="
    add("authorization basic", f"Authorization: Basic {basic}", basic[:28])
    proxy = r(rng, B64, 24) + "="
    add("proxy-authorization", f"Proxy-Authorization: Basic {proxy}", proxy[:24])
    api_key = r(rng, HEX, 32)
    add("x-api-key header", f"X-Api-Key: {api_key}", api_key)
    # Private keys
    for label in (
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ):
        block, core = _pem(rng, label)
        add(f"pem {label.lower()}", f"key file:\n{block}\nend of file", core)
    # Passwords
    for scheme, port in (("postgres", 5432), ("mysql", 3306), ("https", 443)):
        pw = r(rng, ALNUM, 14)
        add(f"{scheme} url password", f"connecting to {scheme}://app:{pw}@db.internal:{port}/x", pw)
    redis_pw = r(rng, ALNUM, 16)
    add("redis url password", f"REDIS_URL=redis://:{redis_pw}@cache:6379/0", redis_pw)
    db_pw = r(rng, ALNUM, 12)
    add("database url", f"DATABASE_URL=postgresql://deploy:{db_pw}@10.0.0.5/prod", db_pw)
    pw = r(rng, ALNUM, 12)
    add("password assignment", f"login failed with password={pw} for user deploy", pw)
    quoted = f"{r(rng, ALNUM, 6)} {r(rng, ALNUM, 6)}"
    add("json secret field", f'config: {{"secret": "{quoted}", "region": "eu"}}', quoted)
    db_password = r(rng, ALNUM, 12)
    add("yaml password", f"db_password: {db_password}", db_password)
    return out


CORPUS = build_corpus()

# Ordinary text that mentions the words, or looks random, and must stay as it is.
ORDINARY = [
    "deploy step 3 finished",
    "ok: 42 tests passed in 3.1s",
    "token count: 5",
    "password reset page",
    "see the password reset page for details",
    "commit 3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a",
    "git checkout 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "run 123e4567-e89b-12d3-a456-426614174000 started",
    "/home/user/projects/choo/tasks/01-setup/IMPLEMENTATION_PLAN.md",
    "C:\\Users\\dev\\AppData\\Local\\Temp\\build.log",
    "tests/daemon/test_session.py::test_events_are_acked PASSED [ 50%]",
    "max_tokens=4096 temperature=0.2",
    "prompt_tokens: 1234, completion_tokens: 56",
    "the tokenizer splits keyboard input into keys",
    "Basic usage: choo run TASKS_DIR",
    "Bearer of bad news",
    "task.started task_id=7 disk-usage=42%",
    "see https://example.com/docs and mail me@example.com",
    "secret sauce recipe",
    "authorization failed: check the README",
    "2026-01-20T14:30:52.123Z INFO worker: unit u1 done",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "password_hash column migrated",
]


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_every_corpus_secret_is_redacted_where_it_shows_up(secret: Secret) -> None:
    assert may_hold_secret(secret.text)
    redacted = redact_text(secret.text)
    assert secret.core not in redacted
    assert MARK in redacted
    assert redact_text(redacted) == redacted  # redacting twice changes nothing


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_text_around_a_secret_stays_readable(secret: Secret) -> None:
    line = f"deploy step 3 finished\n{secret.text}\nnext: upload artifacts"
    redacted = redact_text(line)
    assert secret.core not in redacted
    assert redacted.startswith("deploy step 3 finished\n")
    assert redacted.endswith("\nnext: upload artifacts")


def test_the_corpus_has_over_forty_distinct_shapes() -> None:
    assert len({s.name for s in CORPUS}) >= 40
    assert len({s.core for s in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_prefixes_stay_and_only_the_value_goes() -> None:
    assert redact_text("Authorization: Bearer abcdef0123456789") == (
        "Authorization: Bearer [REDACTED]"
    )
    assert redact_text("postgres://app:hunter2hunter2@db/x") == "postgres://app:[REDACTED]@db/x"
    assert redact_text('{"password": "two words"}') == '{"password": "[REDACTED]"}'
    assert redact_text("DB_PASSWORD=abc123xyz") == "DB_PASSWORD=[REDACTED]"


def test_redact_hides_values_of_secret_named_keys_and_keeps_the_rest() -> None:
    payload = {
        "password": "short",
        "Authorization": "Bearer abc",
        "nested": [{"api_key": "k1"}, {"AWS_SECRET_ACCESS_KEY": "s3"}],
        "tokens": 123,
        "max_tokens": "4096",
        "title": "deploy step 3 finished",
    }
    assert redact(payload) == {
        "password": MARK,
        "Authorization": f"Bearer {MARK}",
        "nested": [{"api_key": MARK}, {"AWS_SECRET_ACCESS_KEY": MARK}],
        "tokens": 123,
        "max_tokens": "4096",
        "title": "deploy step 3 finished",
    }


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_payload_json_redacted_scrubs_nested_values(secret: Secret) -> None:
    payload = {"title": "deploy step 3 finished", "outer": {"list": [1, {"log": secret.text}]}}
    text = payload_json_redacted(payload)
    assert secret.core not in text
    stored = json.loads(text)
    assert stored["title"] == "deploy step 3 finished"
    assert stored["outer"]["list"][0] == 1


def test_payload_json_redacted_is_plain_json_without_secrets() -> None:
    payload = {
        "title": "ok: 42 tests passed",
        "n": [1, 2.5, None, True],
        "u": "é \u200f \U0001f600",
    }
    assert payload_json_redacted(payload) == orjson.dumps(payload).decode()


def test_payload_json_redacted_refuses_what_json_cannot_hold() -> None:
    deep: object = "leaf"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(BadField, match="deeper than 254 levels"):
        payload_json_redacted({"deep": deep})
    with pytest.raises(BadField, match="cannot be stored as JSON"):
        payload_json_redacted({"blob": b"\x00\x01"})


# The pre-check may say yes to ordinary text (that only costs time) but must
# never say no to a text the full patterns would change: a generator biased
# towards the pieces the patterns are made of looks for such a text.
_PIECES = st.sampled_from(
    [
        "password", "PASSWORD", "passwd", "pwd", "secret", "Secret", "token", "TOKEN", "key",
        "api_key", "apiKey", "x-api-key", "client_secret", "AccountKey", "Authorization",
        "authorization", "Proxy-", "Bearer", "BEARER", "Basic", "bearer", "digest", "Bot",
        "AKIA", "ASIA", "AIza", "ya29", "ghp_", "gho_", "github_pat_", "glpat-", "glrt-",
        "xoxb-", "xapp-1-", "sk-", "sk-ant-", "sk-proj-", "sk_live_", "rk_test_", "gsk_",
        "hf_", "xai-", "pplx-", "npm_", "pypi-", "SG.", "dop_v1_", "shpat_", "dckr_pat_",
        "SK", "eyJ", "-----BEGIN ", "PRIVATE KEY", "-----", "https://hooks.slack.com/services/",
        "postgres://", "redis://", "user", "@", ":", "=", "_", "-", ".", " ", "  ", '"', "'",
        "\n", "\t", "\\", "/", ",", "{", "}", "[", "é", "\x00",
    ]
)  # fmt: skip
_FILL = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40)
_TEXTS = st.lists(st.one_of(_PIECES, _FILL), max_size=12).map("".join)


@settings(max_examples=3000, deadline=None)
@given(_TEXTS)
def test_the_pre_check_passes_nothing_the_patterns_would_change(text: str) -> None:
    if _SECRET.sub("", text) != text:
        assert may_hold_secret(text), text
        # The daemon runs it on the JSON text of a payload: escaping hides nothing.
        assert may_hold_secret(orjson.dumps({"v": [text]}).decode()), text


@pytest.mark.parametrize(
    "text",
    [
        "password\\sk-password000000000000",  # found by the search above
        'word"sk-abcdefghijklmnopqrstuv',
        "it'hf_abcdefghijklmnopqrstuvwxyz01234567",
        "x\\rk_live_abcdefghijklmnop",
    ],
)
def test_a_short_prefix_behind_a_dropped_quote_or_backslash_is_caught(text: str) -> None:
    assert _SECRET.sub("", text) != text
    assert may_hold_secret(text)
    assert may_hold_secret(orjson.dumps({"v": [text]}).decode())
    assert MARK in redact_text(text)


# The recorder's one pre-check over a payload's values must change nothing
# ``redact`` on each value would not: texts, nested secret-named keys, lists.
_VALUES = st.one_of(
    _TEXTS,
    st.integers(),
    st.booleans(),
    st.none(),
    st.lists(_TEXTS, max_size=3),
    st.dictionaries(_TEXTS, _TEXTS, max_size=3),
)


@settings(max_examples=2000, deadline=None)
@given(st.dictionaries(st.sampled_from(["tool", "target", "call_id", "output_tail"]), _VALUES))
def test_redact_values_is_redact_on_each_value(payload: dict[str, object]) -> None:
    assert redact_values(payload) == {k: redact(v) for k, v in payload.items()}


def test_redact_values_scrubs_a_secret_and_passes_what_json_cannot_hold() -> None:
    assert redact_values({"target": "curl -H 'Authorization: Bearer abcdefgh12345'"}) == {
        "target": "curl -H 'Authorization: Bearer [REDACTED]'"
    }
    assert redact_values({"n": 2**70, "t": "token=abc"}) == {"n": 2**70, "t": "token=[REDACTED]"}
    clean = {"tool": "Bash", "target": "pytest -q", "exit_code": 0}
    assert redact_values(clean) is clean

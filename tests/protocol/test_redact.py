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
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BadField
from protocol.redact import (
    MARK,
    cut_tail,
    may_hold_secret,
    payload_json_redacted,
    redact,
    redact_tail,
    redact_text,
    redact_values,
    scrub,
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
    _command_lines(rng, add)
    _more_tokens(rng, add, token)
    return out


Add = Callable[[str, str, str], None]


def _command_lines(rng: random.Random, add: Add) -> None:
    """Credentials given on a command line, in headers, and in assignments."""
    r = _rand
    for name, template in (
        ("--password value", "mysqldump --password {} shop > shop.sql"),
        ("--password=value", "psql --password={} -h db"),
        ("--db-password value", "app migrate --db-password {} --yes"),
        ("--token value", "gh-cli deploy --token {} --env prod"),
        ("--api-key value", "vendor-cli --api-key {} upload"),
        ("--client-secret value", "oauth-tool --client-secret {}"),
        ("-storepass value", "keytool -list -keystore ks.jks -storepass {}"),
        ("curl -u user:password", "curl -sS -u deploy:{} https://ci.internal/api"),
        ("curl --user user:password", "curl --user admin:{} https://ci.internal/api"),
        ("mysql -ppassword", "mysql -h db -u root -p{} shop"),
        ("mariadb -p'password'", "mariadb -u root -p'{}' shop"),
        ("sshpass -p 'password'", "sshpass -p '{}' ssh deploy@host"),
        ("sshpass -ppassword", "sshpass -p{} scp a b:"),
        ("PASS= assignment", "PASS={} ./deploy.sh"),
        ("SMTP_PASS= assignment", "export SMTP_PASS={}"),
        ("*_PASSWORD= assignment", "MYSQL_ROOT_PASSWORD={}"),
        ("*_SECRET= assignment", "JWT_SECRET={} npm start"),
        ("client secret env", "AZURE_CLIENT_SECRET={}"),
        ("aws session token", "aws_session_token = {}"),
        ("url query access_token", "GET /v1/me?access_token={}&fields=id"),
        ("url query api_key", "GET /data?format=json&api_key={}"),
        ("kubeconfig client-key-data", "    client-key-data: {}"),
        ("docker run -e password", "docker run -e POSTGRES_PASSWORD={} postgres"),
    ):
        value = r(rng, ALNUM, 18)
        add(name, template.format(value), value)
    cookie = r(rng, URLSAFE, 32)
    add("cookie header", f"Cookie: session={cookie}; theme=dark", cookie)
    set_cookie = r(rng, URLSAFE, 32)
    add("set-cookie header", f"< Set-Cookie: sid={set_cookie}; Path=/; HttpOnly", set_cookie)
    curl_cookie = r(rng, URLSAFE, 32)
    add("curl cookie header", f"curl -H 'Cookie: auth={curl_cookie}' https://x", curl_cookie)
    hook = f"{r(rng, string.digits, 18)}/{r(rng, URLSAFE, 68)}"
    add("discord webhook url", f"POST https://discord.com/api/webhooks/{hook} 204", hook)
    workflow = f"T{r(rng, UPPER_DIGITS, 8)}/A{r(rng, UPPER_DIGITS, 10)}/{r(rng, ALNUM, 24)}"
    add("slack workflow webhook", f"hook: https://hooks.slack.com/workflows/{workflow}", workflow)
    sas = r(rng, B64, 43) + "%3D"
    add(
        "azure sas url",
        f"https://acct.blob.core.windows.net/c/f?sv=2022-11-02&se=2026&sig={sas}",
        sas[:40],
    )
    for scheme in ("mongodb+srv", "amqp", "ftp", "smtp"):
        pw = r(rng, ALNUM, 14)
        add(f"{scheme} url password", f"{scheme}://svc:{pw}@host.internal/x", pw)
    ansi = r(rng, ALNUM, 36)
    add("github token after an ansi code", f"\x1b[32mgh{'p'}_{ansi}\x1b[0m", ansi)
    ansi_sk = r(rng, URLSAFE, 48)
    add("openai key after an ansi code", f"key: \x1b[1;33msk-{ansi_sk}\x1b[0m", ansi_sk)
    ansi_pw = r(rng, ALNUM, 16)
    add("password after an ansi code", f"\x1b[31mpassword={ansi_pw}\x1b[0m", ansi_pw)


def _more_tokens(rng: random.Random, add: Add, token: Callable[..., None]) -> None:
    """Token shapes known by their prefix, and private keys in more wrappings."""
    r = _rand
    token("mailgun key", "ke" + "y-", r(rng, HEX, 32))
    token("linear api key", "lin" + "_api_", r(rng, ALNUM, 40))
    token("notion token", "nt" + "n_", r(rng, string.digits, 11) + r(rng, ALNUM, 35))
    token("notion legacy token", "sec" + "ret_", r(rng, ALNUM, 43))
    token("postman key", "PM" + "AK-", f"{r(rng, HEX, 24)}-{r(rng, HEX, 34)}")
    token("new relic key", "NR" + "AK-", r(rng, UPPER_DIGITS, 27))
    token("sentry org token", "sntr" + "ys_", r(rng, B64, 120))
    token("sentry user token", "sntr" + "yu_", r(rng, HEX, 64))
    token("grafana service account token", "gl" + "sa_", f"{r(rng, ALNUM, 32)}_{r(rng, HEX, 8)}")
    token("grafana cloud token", "gl" + "c_", r(rng, B64, 80))
    token("pulumi token", "pu" + "l-", r(rng, HEX, 40))
    token("stripe webhook secret", "wh" + "sec_", r(rng, ALNUM, 32))
    token("square access token", "sq0" + "atp-", r(rng, URLSAFE, 22))
    token("square oauth secret", "sq0" + "csp-", r(rng, URLSAFE, 43))
    token("google oauth client secret", "GOC" + "SPX-", r(rng, URLSAFE, 28))
    token("supabase token", "sb" + "p_", r(rng, HEX, 40))
    token("render key", "rn" + "d_", r(rng, ALNUM, 32))
    token("buildkite token", "bk" + "ua_", r(rng, HEX, 40))
    token("figma token", "fi" + "gd_", r(rng, URLSAFE, 40))
    token("prefect key", "pn" + "u_", r(rng, ALNUM, 36))
    token("netlify token", "nf" + "p_", r(rng, ALNUM, 40))
    token("langsmith key", "ls" + "v2_pt_", f"{r(rng, HEX, 32)}_{r(rng, HEX, 10)}")
    token("pinecone key", "pc" + "sk_", r(rng, ALNUM, 60))
    token("tailscale key", "ts" + "key-auth-", f"{r(rng, ALNUM, 12)}-{r(rng, ALNUM, 30)}")
    token("perplexity key", "pp" + "lx-", r(rng, ALNUM, 48))
    token("gitlab ci build token", "gl" + "cbt-", r(rng, URLSAFE, 24))
    token("shopify shared secret", "sh" + "pss_", r(rng, HEX, 32))
    token("stripe publishable live key", "pk" + "_live_", r(rng, ALNUM, 99))
    token("age secret key", "AGE-" + "SECRET-KEY-1", r(rng, UPPER_DIGITS, 58))
    token(
        "mapbox secret token",
        "sk" + ".",
        "ey" + "J" + f"{r(rng, URLSAFE, 40)}.{r(rng, URLSAFE, 22)}",
    )
    token("telegram bot token", r(rng, string.digits, 10) + ":" + "AA", r(rng, URLSAFE, 33))
    jwt = ".".join(["ey" + "J" + r(rng, URLSAFE, 20), "ey" + "J" + r(rng, URLSAFE, 40), "s"])
    jwt += r(rng, URLSAFE, 42)
    add("jwt in a bearer header", f"Authorization: Bearer {jwt}", jwt[30:])
    for label in ("DSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK"):
        block, core = _pem(rng, label)
        add(f"pem {label.lower()}", f"gpg output:\n{block}\n", core)
    block, core = _pem(rng, "PRIVATE KEY", lines=4)
    add("pem key in a yaml literal", "tls:\n  key: |\n    " + block.replace("\n", "\n    "), core)
    block, _ = _pem(rng, "RSA PRIVATE KEY", lines=12)
    body = block.splitlines()[1:]
    add("pem key cut off at its BEGIN line", "\n".join(body[4:]), body[7])
    add("pem key cut off at both ends", "\n".join(body[3:9]), body[5])


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
    # Near the shapes added for command lines, headers and assignments
    "mysql --password-file /run/secrets/db shop",
    "vault login --token-file ~/.vault-token",
    "echo hunter2 | docker login --password-stdin -u deploy registry",
    "ssh-keygen --no-password -f key",
    "docker run -p 8080:80 nginx",
    "python -m http.server -p 8000",
    "pip install -p requirements.txt",
    "mysql -h db -u root -p shop",
    "mysql -P 3306 -u root",
    "docker run -u 1000:1000 alpine",
    "PASS: tests/parse.test",
    "3 tests pass, 0 fail",
    "bypass=1 retries=3",
    "the Cookie: header is not sent",
    "set cookie: banner dismissed",
    "--token 42 is the limit",
    "class_name=Worker",
    "https://discord.com/channels/123/456",
    "https://hooks.slack.com/",
    "9fceb02d0ae598e95dc970b74767f19372d61af8\n3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a",
    "\n".join(["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"] * 3),
    "\x1b[32mPASSED\x1b[0m tests/test_x.py::test_token_count",
    "key-value store",
    "ok: 42 tests passed in 3.1s\n" * 6,
]


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_every_corpus_secret_is_redacted_where_it_shows_up(secret: Secret) -> None:
    assert may_hold_secret(secret.text)
    raw = orjson.dumps({"output_tail": secret.text})  # as the daemon's pre-check sees it
    assert may_hold_secret(raw.decode(), raw)
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


def test_the_corpus_has_a_hundred_distinct_shapes_or_more() -> None:
    assert len({s.name for s in CORPUS}) >= 100
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
_PIECES_14 = st.sampled_from(
    [
        "--password ", "--api-key ", "--no-", "-p", "-u ", "--user=", "curl ", "mysql ",
        "sshpass ", "PASS=", "pass", "Cookie: ", "Set-Cookie:", "a=b", "\x1b[32m", "m",
        "https://discord.com/api/webhooks/1/", "hooks.slack.com/workflows/",
        "-----END PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "&sig=", "lin_api_",
        "ntn_", "PMAK-", "NRAK-", "sntrys_", "glsa_", "pul-", "whsec_", "sq0atp-", "GOCSPX-",
        "sbp_", "rnd_", "bkua_", "figd_", "pnu_", "nfp_", "lsv2_pt_", "pcsk_", "tskey-",
        "AGE-SECRET-KEY-1", "sk.eyJ", "1234567890:AA", "key-", "\r",
        "Ab3" * 14, "xY9+/" * 9,
    ]
)  # fmt: skip
_FILL = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40)
_TEXTS = st.lists(st.one_of(_PIECES, _PIECES_14, _FILL), max_size=12).map("".join)


@settings(max_examples=3000, deadline=None)
@given(_TEXTS)
def test_the_pre_check_passes_nothing_the_patterns_would_change(text: str) -> None:
    if scrub(text) != text:
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
    assert scrub(text) != text
    assert may_hold_secret(text)
    assert may_hold_secret(orjson.dumps({"v": [text]}).decode())
    assert MARK in redact_text(text)


# -- output tails: scrubbed before they are cut, cut at a line's start ----------

FILLER = "".join(f"step {n}: ok\n" for n in range(60))


def _pieces(core: str, size: int = 12) -> list[str]:
    size = min(size, len(core))
    return [core[i : i + size] for i in range(len(core) - size + 1)]


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_no_piece_of_a_secret_is_left_in_an_output_tail_wherever_it_is_cut(
    secret: Secret,
) -> None:
    output = f"{FILLER}{secret.text}\n{FILLER}"
    after = len(FILLER) + 1  # the secret's end, counted from the output's end
    scrubbed = redact_text(output)
    for chars in range(after, after + len(secret.text) + 40, 7):
        tail = redact_tail(output, chars)
        assert len(tail) <= chars
        assert scrubbed.endswith(tail)  # the scrubbed output's end, from a line's start:
        assert scrubbed[: len(scrubbed) - len(tail)].endswith("\n")
        for piece in _pieces(secret.core):
            assert piece not in tail, (chars, piece)


def test_a_private_key_longer_than_the_tail_leaves_none_of_its_lines() -> None:
    rng = random.Random(14)
    block, _ = _pem(rng, "RSA PRIVATE KEY", lines=50)
    body = block.splitlines()[1:-1]
    output = f"{FILLER}cat id_rsa\n{block}\n$ "
    for chars in (500, 1000, 2000, 2500):
        tail = redact_tail(output, chars)
        assert "-----BEGIN" not in tail
        assert not [line for line in body if line[:20] in tail], chars


def test_a_private_key_without_its_begin_and_end_lines_is_still_key_material() -> None:
    rng = random.Random(15)
    block, _ = _pem(rng, "OPENSSH PRIVATE KEY", lines=30)
    body = block.splitlines()[1:-1]
    text = "\n".join(["... output cut ...", *body[10:20], "done"])
    redacted = redact_text(text)
    assert redacted == f"... output cut ...\n{MARK}\ndone"
    raw = orjson.dumps({"output_tail": text})
    assert may_hold_secret(raw.decode(), raw)


def test_a_token_cut_by_the_tail_leaves_no_part_of_it() -> None:
    body = _rand(random.Random(16), ALNUM, 36)
    output = f"{FILLER}export GH_TOKEN=gh{'p'}_{body}\n" + "x" * 10
    for chars in range(11, 60):  # the cut falls inside the token, 30 of 36 characters...
        tail = redact_tail(output, chars)
        assert not any(piece in tail for piece in _pieces(body, 8)), chars


def test_a_tail_starts_at_a_line_start() -> None:
    text = "first line\nsecond line\nthird\n"
    assert cut_tail(text, 100) == text
    assert cut_tail(text, len("third\n")) == "third\n"
    assert cut_tail(text, len("d line\nthird\n")) == "third\n"
    assert cut_tail(text, len("second line\nthird\n")) == "second line\nthird\n"
    assert cut_tail("one long line without an end", 8) == "t an end"  # its last line: cut
    assert cut_tail("abc\n", 0) == ""


def test_a_token_right_after_an_ansi_colour_code_is_redacted() -> None:
    body = _rand(random.Random(17), ALNUM, 36)
    line = f"\x1b[32mgh{'p'}_{body}\x1b[0m"
    assert redact_text(line) == f"\x1b[32m{MARK}\x1b[0m"
    assert body not in payload_json_redacted({"output_tail": line})


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("mysql -u root -pS3cr3t shop", f"mysql -u root -p{MARK} shop"),
        ("mysql -u root -p shop", "mysql -u root -p shop"),  # it asks for the password
        ("sshpass -p 'two words' ssh h", f"sshpass -p '{MARK}' ssh h"),
        ("curl -u me:pw0rd https://x", f"curl -u me:{MARK} https://x"),
        ("docker run -u 1000:1000 alpine", "docker run -u 1000:1000 alpine"),
        ("app --password 's e c' --yes", f"app --password '{MARK}' --yes"),
        ("app --password-file pw.txt", "app --password-file pw.txt"),
        ("app --password --yes", "app --password --yes"),  # no value: a flag follows
        ("Cookie: a=b; c=d", f"Cookie: {MARK}"),
        ('{"Set-Cookie": "sid=x1; Path=/"}', f'{{"Set-Cookie": "{MARK}"}}'),
        ("PASS=x1y2 make deploy", f"PASS={MARK} make deploy"),
        ("PASS: test_x", "PASS: test_x"),
    ],
)
def test_command_line_credentials_go_and_the_command_stays(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted
    assert redact_text(redacted) == redacted


def test_a_cookie_named_key_hides_its_value() -> None:
    assert redact({"headers": {"Cookie": "sid=abc", "Accept": "*/*"}}) == {
        "headers": {"Cookie": MARK, "Accept": "*/*"}
    }


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

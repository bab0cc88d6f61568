"""Scrub secrets out of text before it is stored or sent.

Used twice, on purpose: by the orchestrator before an event leaves its
process (``redact``, ``redact_text``), and by the daemon on every string it
stores (``payload_json_redacted``, ``redact_text``), as a second line against
a client that did not. Each pattern matches one known shape of credential and
keeps what is around it readable: ``Authorization: Bearer abc…`` becomes
``Authorization: Bearer [REDACTED]``, ``"password": "x"`` keeps its key.

Most text holds no secret, so a cheap pre-check runs first. It *folds* the
text with one ``bytes.translate``: letters to lower case; the separators
``: = _ . -`` and the capitals ``A S B`` to one marker byte; quotes,
backslashes and spaces dropped (so JSON or shell quoting changes nothing).
Every shape below then leaves a marker next to a telltale: a credential's
name before it (passWORD, secRET, toKEN, KEY, authorizatION), a token's
prefix before it (GHP_, SK-, XOXB-, …) or a token's start after it (eyJ,
BEGIN, AKIA, AIza, Bearer, slack.com, //user:pass@). One regex looks at the
markers only, which ordinary text has few of. ``tests/protocol/test_redact.py``
checks that the full patterns never change a text the pre-check passed.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from protocol.errors import BadField

MARK = "[REDACTED]"

# -- the pre-check ------------------------------------------------------------

_M = b"\x01"  # the marker; JSON text never holds a raw control byte
_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_FOLD = bytes.maketrans(_UPPER + b":=_- ", _UPPER.lower() + _M * 4 + b"\x02")  # \x02: a space
_DROP = b"\"'\\"

# Looks at each marker of the folded text: what ends right before it (three
# bytes: a credential's name or a token's prefix), or what starts after it.
# Alternatives are grouped by their first byte, so that each group costs one
# comparison on a marker it cannot match; nested look-arounds are avoided
# (they make every marker slower, not just the ones they apply to).
_TELLTALE = re.compile(
    rb"""
    \x01 (?:
        //(?: [^/@\x02]*@ | hooks\.slack\.com/ )   # scheme://user:password@, Slack webhooks
      | (?<=
          (?: o (?: rd | x[abposr] )                # passwORD, xOXb- (Slack)
            | p (?: wd | at | tt | ca | pa | ss | lx ) # PWD, *PAT_, glPTT-, shPCA_, pPLX-
            | s wd                                  # paSSWD
            | r (?: et | d\x02 )                    # secRET, passwoRD =
            | w d\x02                               # pWD =, passWD =
            | k (?: en | ey )                       # toKEN, *KEY
            | e [tny]\x02                           # secrET =, tokEN =, kEY =
            | l (?: dt | rt )                       # gLDT-, gLRT-
            | i mt                                  # glIMT-
            | g (?: h[pousr] | sk )                 # GHP_ GHO_ ... (GitHub), GSK_ (Groq)
            | a pp                                  # xAPP- (Slack)
            | d o[por]                              # DOP_ (DigitalOcean)
            | x ai | n pm | y pi | c bt | f ct      # xAI- NPM_ pyPI- glCBT- glfFCT-
            # a short prefix, after anything but a letter (or b f n r t: JSON's \n ...)
            | [\x00-\x60\x7b-\xffbfnrt] (?: hf | sk | [rp]k )  # HF_, SK- SK_ (OpenAI,
          ) \x01 )                                  #   Anthropic, Stripe), RK_ PK_ (Stripe)
    )
    """,
    re.VERBOSE,
)

# Shapes with no separator, each behind the capital letter it cannot do without
# (a test for one character in a str is a memchr: nearly free).
_AWS_GOOGLE = re.compile(r"A(?:KIA|SIA|BIA|CCA|Iza)")  # needs I, K or C
_CAPITAL_S = re.compile(r"S(?:K[0-9a-fA-F]{32}|G\.)")  # Twilio SK…, SendGrid SG.; needs K or G
_CAPITAL_B = re.compile(r"B(?:earer|EARER|asic|ASIC|EGIN)")  # needs B
# "Authorization" would cost every marker a six-byte look-behind; a z is rarer.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ")  # needs J
_YA29 = re.compile(r"ya29\.")  # needs 9
# The fold drops quotes and backslashes, so in ``word\sk-…`` or ``word"sk-…``
# a short prefix seems to follow a letter; the full pattern sees a boundary.
_AFTER_DROPPED = re.compile(r"[\\\"'](?:hf_|sk[-_]|[rp]k_)")  # needs k_, k- or f_


def may_hold_secret(text: str, data: bytes | None = None) -> bool:
    """False when ``text`` surely holds none of the shapes below.

    ``data`` is ``text`` as UTF-8 JSON, when the caller has it already (its
    opening bracket gives a prefix at the very start its three bytes of look-back).
    """
    if data is None:
        data = b" " + text.encode("utf-8", "surrogatepass")
    return (
        _TELLTALE.search(data.translate(_FOLD, _DROP)) is not None
        or (("I" in text or "K" in text or "C" in text) and _AWS_GOOGLE.search(text) is not None)
        or (("K" in text or "G" in text) and _CAPITAL_S.search(text) is not None)
        or ("B" in text and _CAPITAL_B.search(text) is not None)
        or (("z" in text or "Z" in text) and ("uthorization" in text or "UTHORIZATION" in text))
        or ("J" in text and _JWT.search(text) is not None)
        or ("9" in text and _YA29.search(text) is not None)
        or (
            ("k_" in text or "k-" in text or "f_" in text)
            and _AFTER_DROPPED.search(text) is not None
        )
    )


# -- the full patterns ----------------------------------------------------------

# A credential's name in key=value, "key": "value", KEY: value, --key=value.
# The keyword may have anything before it (db_password, AWS_SECRET_ACCESS_KEY,
# clientSecret, storageKey) and after it only a suffix behind _ or -
# (password_file), so that "tokenizer", "monkey" or "keyboard" stay names of
# something else.
_NAME = (
    r"(?<![A-Za-z0-9_.-])"
    r"(?:[A-Za-z0-9_.-]*?(?i:password|passwd|pwd|secret|token|apikey|accesskey|privatekey"
    r"|secretkey|accountkey)"
    r"|(?:[A-Za-z0-9_.-]*[_.-])?(?i:key)|[A-Za-z0-9_.-]*[a-z0-9]Key)"
    r"(?:[_-][A-Za-z0-9_-]*)?(?![A-Za-z0-9.])"
)
_AUTHORIZATION = r"\b(?:[Pp]roxy-|PROXY-)?(?:[Aa]uthorization|AUTHORIZATION)"
_SCHEME = r"(?i:bearer|basic|token|digest|bot|negotiate)"

# Separators allow one space around them (the pre-check folds quoting away,
# and looks three bytes back from the separator).
_SECRET = re.compile(
    rf"""
    # Whole-token shapes: the match goes entirely.
      -----BEGIN[A-Z0-9 ]*PRIVATE\ KEY(?:\ BLOCK)?-----[\s\S]*?
        (?:-----END[A-Z0-9 ]*PRIVATE\ KEY(?:\ BLOCK)?-----|\Z)
    | \b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{{16}}\b           # AWS access key id
    | \bgh[pousr]_[A-Za-z0-9]{{36,255}}\b                 # GitHub classic, OAuth, app
    | \bgithub_pat_[A-Za-z0-9_]{{22,255}}\b               # GitHub fine-grained
    | \bgl(?:pat|ptt|dt|rt|cbt|imt|ffct)-[A-Za-z0-9_-]{{20,}}   # GitLab
    | \bxox[abposr]-[A-Za-z0-9-]{{10,}}                   # Slack tokens
    | \bxapp-[0-9]-[A-Za-z0-9-]{{10,}}                    # Slack app-level token
    | https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+   # Slack webhook
    | \bsk-ant-[A-Za-z0-9_-]{{20,}}                       # Anthropic
    | \bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{{20,}} # OpenAI and look-alikes
    | \bgsk_[A-Za-z0-9]{{20,}}                            # Groq
    | \b[srp]k_(?:live|test)_[A-Za-z0-9]{{16,}}           # Stripe
    | \bAIza[0-9A-Za-z_-]{{35}}                           # Google API key
    | \bya29\.[0-9A-Za-z_-]{{20,}}                        # Google OAuth access token
    | \bhf_[A-Za-z0-9]{{30,}}                             # Hugging Face
    | \bxai-[A-Za-z0-9]{{40,}}                            # xAI
    | \bpplx-[A-Za-z0-9]{{40,}}                           # Perplexity
    | \bnpm_[A-Za-z0-9]{{36}}\b                           # npm
    | \bpypi-[A-Za-z0-9_-]{{50,}}                         # PyPI
    | \bSG\.[A-Za-z0-9_-]{{16,}}\.[A-Za-z0-9_-]{{16,}}    # SendGrid
    | \bdo[por]_v1_[a-f0-9]{{64}}\b                       # DigitalOcean
    | \bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{{32}}\b            # Shopify
    | \bdckr_pat_[A-Za-z0-9_-]{{20,}}                     # Docker Hub
    | \bSK[0-9a-fA-F]{{32}}\b                             # Twilio API key
    | \beyJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}   # JWT
    # Shapes whose telling prefix stays: only the value goes.
    | (?P<k1>{_AUTHORIZATION}\ ?["']?\ ?[:=]\ ?["']?(?:{_SCHEME}\ +)?)[^\s"',;]+
    | (?P<k2>\b(?:Bearer|BEARER|Basic|BASIC)\ +)
        (?=[A-Za-z0-9._~+/-]*[0-9A-Z+/])[A-Za-z0-9._~+/-]{{8,}}=*
    | (?P<k3>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)   # user:password@
    | (?P<k4>{_NAME}\ ?["']?\ ?[:=]\ *)
        (?!\[REDACTED\]|[0-9.,]+(?![^\s"',;&}}]))        # counts are not secrets
        (?: (?P<q>["'])(?:(?!(?P=q)).)+(?P=q)             # a quoted value, spaces and all
          | [^\s"',;&}}]+ )
    | (?P<k5>\bAccountKey=)[A-Za-z0-9+/=]{{20,}}          # Azure storage connection string
    """,
    re.VERBOSE,
)


def _replace(match: re.Match[str]) -> str:
    kept = match["k1"] or match["k2"] or match["k3"] or match["k4"] or match["k5"]
    if kept is None:
        return MARK
    quote = match["q"] or ""
    return f"{kept}{quote}{MARK}{quote}"


def redact_text(text: str) -> str:
    """``text`` with every known secret shape replaced by ``[REDACTED]``."""
    if not may_hold_secret(text):
        return text
    return _SECRET.sub(_replace, text)


_SECRET_KEY = re.compile(rf"{_NAME}|{_AUTHORIZATION}")
_AUTH_VALUE = re.compile(rf"^((?:{_SCHEME}\s+)?)\S.*$", re.DOTALL)


def _redact_item(key: str, value: Any) -> Any:
    """The value of a map entry; a secret-named key hides a string value whole."""
    if type(value) is str and not value.isdigit() and _SECRET_KEY.fullmatch(key):
        return _AUTH_VALUE.sub(lambda m: m[1] + MARK, value)
    return redact(value)


def redact(value: Any) -> Any:
    """Redact every string inside a JSON-like value (map keys included)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): _redact_item(k, v) if type(k) is str else redact(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_values(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with ``redact`` applied to each value (the keys as they are).

    The orchestrator's first line, once per event: one pre-check over the
    values' JSON text (as the daemon's ``payload_json_redacted`` checks a whole
    payload) proves most payloads clean, and then ``payload`` itself comes
    back, not a copy. The keys are left out of the text: they are not redacted
    here, and each would only add a separator for the pre-check to look at.
    Values JSON cannot hold (no text to check) go through ``redact``.
    """
    try:
        raw = orjson.dumps(list(payload.values()))
    except TypeError:
        raw = None
    if raw is not None and not may_hold_secret(raw.decode(), raw):
        return payload
    return {k: redact(v) for k, v in payload.items()}


def payload_json_text(payload: Any) -> str:
    """An event payload as the JSON text stored for it, not scrubbed.

    Raises BadField like ``protocol.payload_json`` for what JSON cannot hold
    (binary, extension types, integers over 64 bits, nesting over 254 levels).
    """
    return _payload_raw(payload).decode()


def _payload_raw(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError as exc:
        why = "it nests deeper than 254 levels" if "ecursion" in str(exc) else str(exc)
        raise BadField(f"event: payload cannot be stored as JSON: {why}") from None


def payload_json_redacted(payload: Any) -> str:
    """An event payload as JSON text for storage, with every secret shape scrubbed.

    The daemon's second line: the pre-check runs once over the whole JSON
    text, so a payload without secrets costs one translate and one search.
    Raises BadField as ``payload_json_text`` does.
    """
    raw = _payload_raw(payload)
    text = raw.decode()
    if may_hold_secret(text, raw):
        text = orjson.dumps(redact(payload)).decode()
    return text


def event_may_hold_secret(payload: Any, error: str | None) -> bool:
    """False when neither the payload (as stored: JSON) nor the error can hold
    a secret shape, so that both may be stored as they are.

    Raises BadField as ``payload_json_text`` does.
    """
    if payload is not None:
        raw = _payload_raw(payload)
        if may_hold_secret(raw.decode(), raw):
            return True
    return error is not None and may_hold_secret(error)

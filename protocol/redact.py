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

Output is cut to a tail only after it is scrubbed (``redact_tail``), and at a
line's start: a token cut in two, or a private key whose BEGIN line was cut
off, would no longer look like one. A key's body lines without their BEGIN
line (up to an END line, or two or more long base64 lines of mixed case and
digits) count as key material. Credentials on a command line are known by
their flag (``--password X``) or their program (``curl -u``, ``mysql -p``,
``sshpass -p``).
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
# (they make every marker slower, not just the ones they apply to), but for
# one behind the bytes it alone needs (PASS=).
_TELLTALE = re.compile(
    rb"""
    \x01 (?:
      # what starts after the marker (one test for most markers: the first byte)
        (?= [/\x01pstaku] ) (?:
            //(?: [^/@\x02]*@ | hooks\.slack\.com/  # scheme://user:password@, Slack webhooks,
                | (?:[a-z]+\.)?discord(?:app)?\.com/ )   #   Discord webhooks
          | \x01 (?: \x01\x01\x01end | user[\x01\x02] )   # -----END (a key cut off), curl --user
          # --password VALUE, --api-key VALUE, ... (a flag's name, a space)
          | pass(?:w(?:or)?d)?\x02 | s(?:torepass|ecret)\x02 | token\x02 | a(?:pikey\x02|a)
          | key(?:pass)?\x02 | u\x02                 # curl -u user:password; 123:AA (Telegram)
        )
      # what ends right before it
      | (?<=
          (?: o (?: rd | x[abposr] )                # passwORD, xOXb- (Slack)
            | p (?: wd | at | tt | ca | pa | ss | lx | ul | nu )  # PWD, *PAT_, glPTT-, shPCA_,
            #                                         pPLX-, PULumi-, PNU_ (Prefect)
            | s (?: wd | ec | px | bp | v2 | ig )   # paSSWD, whSEC_, gocSPX-, SBP_, lSV2_, SIG=
            | r (?: et | d\x02 | ak | y[su] | nd )   # secRET, passwoRD =, nRAK-, sntRYS_, RND_
            | w d\x02                               # pWD =, passWD =
            | k (?: en | ey | ie | ua )             # toKEN, *KEY, cooKIE:, bKUA_
            | e [tny]\x02                           # secrET =, tokEN =, kEY =
            | l (?: dt | rt | in | sa )             # gLDT-, gLRT-, LIN_, gLSA_
            | i (?: mt | gd )                       # glIMT-, fIGD_
            | g (?: h[pousr] | sk | lc )            # GHP_ GHO_ ... (GitHub), GSK_ (Groq), GLC_
            | a (?: pp | tp                         # xAPP- (Slack), sq0ATP- (Square),
                  | ss (?<=[\x00-\x60\x7b-\xffbfmnrt]pass) )  #   PASS=, DB_PASS=
            | c (?: bt | sp | sk )                  # glCBT-, sq0CSP-, pCSK_ (Pinecone)
            | n (?: pm | tn | fp )                  # NPM_, NTN_ (Notion), NFP_ (Netlify)
            | m ak                                  # PMAK- (Postman)
            | d o[por]                              # DOP_ (DigitalOcean)
            | x ai | y pi | f ct                    # xAI- pyPI- glfFCT-
            # a short prefix, after anything but a letter (or b f n r t: JSON's \n ...;
            # m: the end of an ANSI colour code)
            | [\x00-\x60\x7b-\xffbfmnrt] (?: hf | sk | [rp]k )  # HF_, SK- SK_ (OpenAI,
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
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ|sk\.eyJ")  # needs J (JWT, Mapbox)
_YA29 = re.compile(r"ya29\.")  # needs 9
# The fold drops quotes and backslashes, so in ``word\sk-…`` or ``word"sk-…``
# a short prefix seems to follow a letter; the full pattern sees a boundary.
_AFTER_DROPPED = re.compile(r"[\\\"'](?:hf_|sk[-_]|[rp]k_)")  # needs k_, k- or f_
# The second line of a run of base64 lines (a key whose BEGIN line was cut
# off), behind the newline it cannot do without: raw, or escaped in JSON.
_B64_LINE_START = re.compile(r"\n[A-Za-z0-9+/]{40}")
_B64_LINE_START_JSON = re.compile(r"\\n[A-Za-z0-9+/]{40}")


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
        or ("-p" in text and ("mysql" in text or "mariadb" in text or "sshpass" in text))
        or ("\n" in text and _B64_LINE_START.search(text) is not None)
        or ("\\" in text and _B64_LINE_START_JSON.search(text) is not None)
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
# Where a token may start: after anything but a letter or digit, or right
# after an ANSI colour code (``\x1b[32mghp_…``).
_B = r"(?:\b|(?<=[0-9;\[]m))"
# A value: quoted (spaces and all), or up to a space, quote or separator.
_VALUE = r"""(?:(?P<{q}>["'])(?:(?!(?P={q})).)+(?P={q})|[^\s"',;&}}]+)"""
_NOT_A_COUNT = r"(?![0-9.,]+(?![^\s\"',;&}]))"  # counts are not secrets
# One line of a private key's body: base64, long, of mixed case and digits.
_KEY_LINE = (
    r"(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[0-9])"
    r"[A-Za-z0-9+/]{40,}={0,2}\r?(?![^\n])"
)
# Its last line: shorter, but with a digit, + / or = (not a word like "done").
_KEY_LAST = r"(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{4,}={0,2}\r?(?![^\n])"
_PEM_END = r"-----END[A-Z0-9 ]*PRIVATE\ KEY(?:\ BLOCK)?-----"

# Separators allow one space around them (the pre-check folds quoting away,
# and looks three bytes back from the separator).
_SECRET = re.compile(
    rf"""
    # Whole-token shapes: the match goes entirely.
      -----BEGIN[A-Z0-9 ]*PRIVATE\ KEY(?:\ BLOCK)?-----[\s\S]*?(?:{_PEM_END}|\Z)
    # a key's body whose BEGIN line was cut off: its lines up to its END line,
    # or a run of two or more long base64 lines
    | (?<![^\n])(?:[ \t]*[A-Za-z0-9+/=]+[ \t\r]*\n)+[ \t]*{_PEM_END}
    | (?<![^\n]){_KEY_LINE}(?:\n{_KEY_LINE})+(?:\n{_KEY_LAST})?
    | {_B}(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{{16}}\b           # AWS access key id
    | {_B}gh[pousr]_[A-Za-z0-9]{{36,255}}\b                 # GitHub classic, OAuth, app
    | {_B}github_pat_[A-Za-z0-9_]{{22,255}}\b               # GitHub fine-grained
    | {_B}gl(?:pat|ptt|dt|rt|cbt|imt|ffct)-[A-Za-z0-9_-]{{20,}}   # GitLab
    | {_B}gl(?:sa|c)_[A-Za-z0-9_+/=-]{{32,}}                # Grafana
    | {_B}xox[abposr]-[A-Za-z0-9-]{{10,}}                   # Slack tokens
    | {_B}xapp-[0-9]-[A-Za-z0-9-]{{10,}}                    # Slack app-level token
    | https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+  # Slack webhook
    | https://(?:(?:canary|ptb)\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/[A-Za-z0-9_-]+
    | {_B}sk-ant-[A-Za-z0-9_-]{{20,}}                       # Anthropic
    | {_B}sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{{20,}} # OpenAI and look-alikes
    | {_B}sk\.eyJ[A-Za-z0-9_-]{{20,}}\.[A-Za-z0-9_-]{{20,}} # Mapbox
    | {_B}gsk_[A-Za-z0-9]{{20,}}                            # Groq
    | {_B}[srp]k_(?:live|test)_[A-Za-z0-9]{{16,}}           # Stripe
    | {_B}whsec_[A-Za-z0-9+/=]{{24,}}                       # webhook signing secret
    | {_B}AIza[0-9A-Za-z_-]{{35}}                           # Google API key
    | {_B}GOCSPX-[A-Za-z0-9_-]{{28}}                        # Google OAuth client secret
    | {_B}ya29\.[0-9A-Za-z_-]{{20,}}                        # Google OAuth access token
    | {_B}hf_[A-Za-z0-9]{{30,}}                             # Hugging Face
    | {_B}xai-[A-Za-z0-9]{{40,}}                            # xAI
    | {_B}pplx-[A-Za-z0-9]{{40,}}                           # Perplexity
    | {_B}pcsk_[A-Za-z0-9_]{{40,}}                          # Pinecone
    | {_B}lsv2_(?:pt|sk)_[a-f0-9]{{32}}_[a-f0-9]{{10}}\b    # LangSmith
    | {_B}npm_[A-Za-z0-9]{{36}}\b                           # npm
    | {_B}pypi-[A-Za-z0-9_-]{{50,}}                         # PyPI
    | {_B}SG\.[A-Za-z0-9_-]{{16,}}\.[A-Za-z0-9_-]{{16,}}    # SendGrid
    | {_B}do[por]_v1_[a-f0-9]{{64}}\b                       # DigitalOcean
    | {_B}shp(?:at|ca|pa|ss)_[a-fA-F0-9]{{32}}\b            # Shopify
    | {_B}dckr_pat_[A-Za-z0-9_-]{{20,}}                     # Docker Hub
    | {_B}SK[0-9a-fA-F]{{32}}\b                             # Twilio API key
    | {_B}key-[0-9a-f]{{32}}\b                              # Mailgun
    | {_B}lin_(?:api|oauth)_[A-Za-z0-9]{{40}}\b             # Linear
    | {_B}ntn_[0-9]{{11}}[A-Za-z0-9]{{35}}\b                # Notion
    | {_B}secret_[A-Za-z0-9]{{43}}\b                        # Notion (older)
    | {_B}PMAK-[0-9a-f]{{24}}-[0-9a-f]{{34}}\b              # Postman
    | {_B}NRAK-[A-Z0-9]{{27}}\b                             # New Relic
    | {_B}sntry[su]_[A-Za-z0-9+/=_]{{40,}}                  # Sentry
    | {_B}pul-[a-f0-9]{{40}}\b                              # Pulumi
    | {_B}sq0(?:atp|csp)-[A-Za-z0-9_-]{{22,}}               # Square
    | {_B}sbp_[a-f0-9]{{40}}\b                              # Supabase
    | {_B}rnd_[A-Za-z0-9]{{32}}\b                           # Render
    | {_B}bkua_[a-f0-9]{{40}}\b                             # Buildkite
    | {_B}figd_[A-Za-z0-9_-]{{40,}}                         # Figma
    | {_B}pnu_[A-Za-z0-9]{{36}}\b                           # Prefect
    | {_B}nfp_[A-Za-z0-9]{{36,}}                            # Netlify
    | {_B}tskey-[a-z]+-[A-Za-z0-9-]{{20,}}                  # Tailscale
    | \bAGE-SECRET-KEY-1[0-9A-Z]{{58}}\b                    # age
    | (?<![0-9])[0-9]{{8,10}}:AA[A-Za-z0-9_-]{{33}}(?![\w-])              # Telegram bot
    | {_B}eyJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}   # JWT
    # Shapes whose telling prefix stays: only the value goes.
    | (?P<k1>{_AUTHORIZATION}\ ?["']?\ ?[:=]\ ?["']?(?:{_SCHEME}\ +)?)[^\s"',;]+
    | (?P<k2>\b(?:Bearer|BEARER|Basic|BASIC)\ +)
        (?=[A-Za-z0-9._~+/-]*[0-9A-Z+/])[A-Za-z0-9._~+/-]{{8,}}=*
    | (?P<k3>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)   # user:password@
    | (?P<k4>{_NAME}\ ?["']?\ ?[:=]\ *){_NOT_A_COUNT}{_VALUE.format(q="q")}
    | (?P<k5>\bAccountKey=)[A-Za-z0-9+/=]{{20,}}          # Azure storage connection string
    | (?P<k6>(?<![A-Za-z0-9_-])(?i:set-cookie|cookie)["']?:\ *["']?)   # Cookie: a=b; c=d
        (?=[^\s=;"']+=)[^\r\n"']+
    | (?P<k7>(?<![A-Za-z0-9_-])--?(?!no-)(?:[A-Za-z0-9]+-)*            # --password VALUE
        (?i:password|passwd|pass|storepass|keypass|secret|token|apikey|api-key|access-key
           |secret-key|private-key)\ +)
        (?!-){_NOT_A_COUNT}{_VALUE.format(q="q7")}
    | (?P<k8>(?<![A-Za-z0-9_.-])(?:[A-Za-z0-9_.-]*[_.-])?(?i:pass)=){_NOT_A_COUNT}  # PASS=
        {_VALUE.format(q="q8")}
    | (?P<k9>[?&]sig=)[A-Za-z0-9%+/=]{{20,}}              # Azure SAS signature
    """,
    re.VERBOSE,
)

# Credentials in a command line, known by the program they are given to; a
# second pass, since the program's name (kept) may be far before them.
_LINE = r"[^\n;&|]*?\s"
_COMMAND = re.compile(
    rf"""
      (?P<c1>\bcurl\b{_LINE}(?:-u\ +|--user[ =]\ *)["']?[^\s:"']*:)[^\s"']+   # curl -u user:PASS
    | (?P<c2>\b(?:mysql[a-z]*|mariadb(?:-[a-z]+)?)\b{_LINE}-p)                # mysql -pPASS
        {_VALUE.format(q="q2")}
    | (?P<c3>\bsshpass\b{_LINE}-p\ *){_VALUE.format(q="q3")}                 # sshpass -p 'X'
    """,
    re.VERBOSE,
)


def _replace(match: re.Match[str]) -> str:
    kept = match.group("k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9")
    return _keep(match, kept, ("q", "q7", "q8"))


def _replace_command(match: re.Match[str]) -> str:
    return _keep(match, match.group("c1", "c2", "c3"), ("q2", "q3"))


def _keep(match: re.Match[str], kept: tuple[str | None, ...], quotes: tuple[str, ...]) -> str:
    """The match's kept prefix (if any) and ``[REDACTED]``, in the value's quotes."""
    prefix = next((k for k in kept if k is not None), None)
    if prefix is None:
        return MARK
    quote = next((q for q in match.group(*quotes) if q), "")
    return f"{prefix}{quote}{MARK}{quote}"


def scrub(text: str) -> str:
    """``text`` through the full patterns, without the pre-check."""
    text = _SECRET.sub(_replace, text)
    if "curl" in text or "-p" in text:
        text = _COMMAND.sub(_replace_command, text)
    return text


def redact_text(text: str) -> str:
    """``text`` with every known secret shape replaced by ``[REDACTED]``."""
    if not may_hold_secret(text):
        return text
    return scrub(text)


# How far before a tail its scrub looks, for what began earlier (a key's
# BEGIN line): output kept by the orchestrator is at most 64 KiB anyway.
TAIL_CONTEXT = 128 * 1024


def cut_tail(text: str, chars: int) -> str:
    """The end of ``text`` in at most ``chars`` characters, from a line's start.

    Only when the last line alone is longer is it cut inside (then the text
    must have been scrubbed first: see ``redact_tail``).
    """
    if chars <= 0:
        return ""
    if len(text) <= chars:
        return text
    start = len(text) - chars
    if text[start - 1] != "\n":
        newline = text.find("\n", start, len(text) - 1)
        if newline != -1:
            start = newline + 1
    return text[start:]


def redact_tail(text: str, chars: int) -> str:
    """The end of ``text`` in at most ``chars`` characters, scrubbed before it is
    cut (a secret cut in two would no longer look like one) and cut at a line's
    start (a key's body lines, or a token's end, do not begin the tail)."""
    if len(text) > chars + TAIL_CONTEXT:
        text = text[text.find("\n", len(text) - chars - TAIL_CONTEXT) + 1 :]
    return cut_tail(redact_text(text), chars)


_SECRET_KEY = re.compile(rf"{_NAME}|{_AUTHORIZATION}|(?i:set-cookie|cookie)")
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

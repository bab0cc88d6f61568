"""Scrub secrets out of text before it is stored or sent.

Used twice, on purpose: by the orchestrator before an event leaves its
process, and by the daemon on every string it stores. Each pattern matches
one known shape of credential and keeps what is around it readable:
``Authorization: Bearer abc…`` becomes ``Authorization: Bearer [REDACTED]``.
"""

from __future__ import annotations

import re
from typing import Any

MARK = "[REDACTED]"

# Whole-token secrets: the match is replaced entirely.
_TOKENS = [
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}\b",  # GitLab
    r"\bgl(?:ptt|dt|rt|cbt|imt|agent|soat|ffct)-[A-Za-z0-9_-]{20,}\b",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",  # Slack tokens
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
    r"\bsk-ant-[A-Za-z0-9_-]{20,}\b",  # Anthropic
    r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}\b",  # OpenAI and look-alikes
    r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
    r"\bya29\.[0-9A-Za-z_-]{20,}\b",  # Google OAuth access token
    r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
    r"\bgsk_[A-Za-z0-9]{40,}\b",  # Groq
    r"\bxai-[A-Za-z0-9]{40,}\b",  # xAI
    r"\bpplx-[A-Za-z0-9]{40,}\b",  # Perplexity
    r"\bnpm_[A-Za-z0-9]{36}\b",  # npm
    r"\bpypi-[A-Za-z0-9_-]{50,}\b",  # PyPI
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b",  # Stripe
    r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\b",  # SendGrid
    r"\bdop_v1_[a-f0-9]{64}\b",  # DigitalOcean
    r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",  # Shopify
    r"\b[MN][A-Za-z\d]{23,25}\.[\w-]{6}\.[\w-]{27,38}\b",  # Discord bot token
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",  # JWT
    r"\bAccountKey=[A-Za-z0-9+/=]{40,}",  # Azure storage connection string
    r"\b(?:twilio_)?SK[0-9a-fA-F]{32}\b",  # Twilio API key
]

# Secrets that follow a telling prefix: the prefix stays, the value goes.
_PREFIXED = [
    # Authorization headers: Bearer/Basic/Token schemes, or a bare value.
    r"(?i)(\bauthorization\s*[:=]\s*[\"']?(?:bearer|basic|token|digest)?\s*)[^\s\"',;]+",
    r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}",
    r"(?i)(\b(?:x-api-key|api-key|x-auth-token)\s*[:=]\s*[\"']?)[^\s\"',;]+",
    # user:password@ in URLs
    r"([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)",
    # key=value and "key": "value" assignments of secret-named keys
    r"(?i)(\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret)[\w.-]*[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"',;&}]{4,}",
]

_TOKEN_RE = re.compile("|".join(f"(?:{p})" for p in _TOKENS))
_PREFIXED_RE = [re.compile(p) for p in _PREFIXED]
# Cheap pre-check: most strings hold none of these and skip the regexes.
_HINT = re.compile(
    r"(?i)PRIVATE KEY|AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|gl[a-z]+-|xox|hooks\.slack|"
    r"sk-|sk_|rk_|pk_|AIza|ya29\.|hf_|gsk_|xai-|pplx-|npm_|pypi-|SG\.|dop_v1|shp|eyJ|AccountKey|SK[0-9a-f]|"
    r"auth|bearer|basic|api-key|api_key|apikey|token|://[^\s/@]+:[^\s@]+@|pass|pwd|secret|key|"
    r"[MN][A-Za-z\d]{23}"
)


def redact_text(text: str) -> str:
    """``text`` with every known secret shape replaced by ``[REDACTED]``."""
    if not _HINT.search(text):
        return text
    text = _TOKEN_RE.sub(MARK, text)
    for pattern in _PREFIXED_RE:
        text = pattern.sub(lambda m: m.group(1) + MARK, text)
    return text


def redact(value: Any) -> Any:
    """Redact every string inside a JSON-like value (dict keys included)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value

"""Sending access notifications: e-mail over SMTP and a signed webhook POST (stdlib only).

Every failure becomes a DeliveryError whose reason is short and holds no personal data
(never the address, the URL or the server's reply text), e.g. "smtp connect refused",
"http 503". `permanent` marks failures a retry cannot fix (5xx SMTP reply, HTTP 410, a refused
webhook address).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from audit.notify import SIGNATURE_HEADER, Message, webhook_signature

USER_AGENT = "dossier-notifier/1"


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:120]
        self.permanent = permanent


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    sender: str = "dossier@localhost"
    starttls: bool = False
    timeout: float = 10.0
    username: str | None = None
    password: str | None = None


def email_message(config: SmtpConfig, to: str, message: Message, key: str) -> EmailMessage:
    domain = config.sender.rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    msg["From"] = config.sender
    msg["To"] = to
    msg["Subject"] = message.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{key}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    if message.urgent:
        msg["Importance"] = "high"
        msg["X-Priority"] = "1"
    msg.set_content(message.text)
    msg["Content-Language"] = message.language  # after set_content, which resets Content-*
    return msg


def send_email(config: SmtpConfig, to: str, message: Message, key: str) -> None:
    """Send one message; `key` (the delivery's idempotency key) becomes the Message-ID."""
    msg = email_message(config, to, message, key)
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.username:
                smtp.login(config.username, config.password or "")
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError("smtp recipient refused", permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        code = int(exc.smtp_code)
        raise DeliveryError(f"smtp reply {code}", permanent=500 <= code < 600) from None
    except smtplib.SMTPException:
        raise DeliveryError("smtp protocol error") from None
    except ConnectionRefusedError:
        raise DeliveryError("smtp connect refused") from None
    except TimeoutError:
        raise DeliveryError("smtp timeout") from None
    except ssl.SSLError:
        raise DeliveryError("smtp tls error") from None
    except OSError:
        raise DeliveryError("smtp connection error") from None


def check_webhook_url(url: str, *, allow_local: bool = False) -> str:
    """https:// with a host (http:// too when `allow_local`); raises ValueError."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in schemes or not parts.hostname or parts.username or \
            parts.password or len(url) > 2000:
        raise ValueError("the webhook must be an https:// URL without credentials")
    return url


def _refuse_private(host: str, port: int) -> None:
    """Refuse loopback, private, link-local and other non-global addresses (SSRF)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        raise DeliveryError("http name resolution failed") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise DeliveryError("webhook address refused", permanent=True)


def webhook_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                      sort_keys=True).encode("utf-8")


def post_webhook(url: str, body: bytes, secret: str, *, key: str, now: int,
                 timeout: float = 10.0, allow_local: bool = False) -> None:
    """POST the signed body; any 2xx is delivered. Redirects are not followed."""
    post(url, body, {"Content-Type": "application/json",
                     SIGNATURE_HEADER: webhook_signature(secret, body, now),
                     "Idempotency-Key": key}, timeout=timeout, allow_local=allow_local)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float = 10.0,
         allow_local: bool = False) -> None:
    """POST `body` with `headers`; any 2xx is delivered, anything else a DeliveryError
    (permanent for a refused address or a 410). Redirects are not followed."""
    try:
        check_webhook_url(url, allow_local=allow_local)
    except ValueError:
        raise DeliveryError("webhook url refused", permanent=True) from None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not allow_local:
        _refuse_private(host, port)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                     body=body, headers={"User-Agent": USER_AGENT, **headers})
        response = conn.getresponse()
        response.read(65536)
        status = response.status
    except ConnectionRefusedError:
        raise DeliveryError("http connect refused") from None
    except TimeoutError:
        raise DeliveryError("http timeout") from None
    except ssl.SSLError:
        raise DeliveryError("http tls error") from None
    except (OSError, http.client.HTTPException):
        raise DeliveryError("http connection error") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        # only 410 says "never again"; a 404 or 5xx may be a receiver being redeployed
        raise DeliveryError(f"http {status}", permanent=status == 410)

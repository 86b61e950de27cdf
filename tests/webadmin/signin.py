"""Signing in to a running web UI with only the standard library (for process and image tests)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass
class SignedInPage:
    """Where the browser landed after the sign-in form, the page, and the cookies to go on with."""

    url: str
    page: str
    opener: urllib.request.OpenerDirector

    def get(self, path: str) -> str:
        """A page of the same site, fetched with the session's cookie."""
        base = urllib.parse.urlsplit(self.url)
        with self.opener.open(f"{base.scheme}://{base.netloc}{path}", timeout=30) as response:
            return str(response.read().decode())


def sign_in(base_url: str, username: str, password: str, language: str = "en") -> SignedInPage:
    """Fill in the sign-in form at ``base_url`` and follow where it leads."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    opener.addheaders = [("Accept-Language", language)]
    with opener.open(f"{base_url}/login", timeout=30) as response:
        form_page = response.read().decode()
    token = re.search(r'name="form_token" value="([^"]+)"', form_page)
    assert token, f"no sign-in form at {base_url}/login:\n{form_page}"
    form = urllib.parse.urlencode(
        {"form_token": token.group(1), "next": "/", "username": username, "password": password}
    ).encode()
    with opener.open(f"{base_url}/login", data=form, timeout=30) as response:
        return SignedInPage(response.url, response.read().decode(), opener)

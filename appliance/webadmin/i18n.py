"""The web UI's two languages: its texts in Chinese and English, and picking one per request.

Like the IVR's prompts (``appliance/ivr/prompts.py``) every text sits with
both its translations, so a missing one fails at import, not in front of a
user. A request's language is the ``lang`` cookie (set by the page's
language switch), else the best of the browser's ``Accept-Language``, else
the box's language (``[ivr] prompt_language``).
"""

from __future__ import annotations

from typing import Any

from appliance.webadmin.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, PasswordProblem

LANGUAGES = ("zh", "en")
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}

TEXTS: dict[str, dict[str, str]] = {
    "sign_in_title": {"zh": "登录 Callbox", "en": "Sign in to Callbox"},
    "username": {"zh": "用户名", "en": "Username"},
    "password": {"zh": "密码", "en": "Password"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "sign_out": {"zh": "退出登录", "en": "Sign out"},
    "signed_in_as": {"zh": "当前用户：{user}", "en": "Signed in as {user}"},
    "login_failed": {"zh": "用户名或密码错误。", "en": "Wrong username or password."},
    "locked_out": {
        "zh": "此地址登录失败次数过多，已被暂时锁定。请在 {minutes} 分钟后重试。",
        "en": "Too many failed sign-ins from this address: it is locked for now. "
        "Try again in {minutes} minutes.",
    },
    "form_expired": {
        "zh": "表单已过期或来自其他网站，请刷新页面后重试。",
        "en": "The form expired or came from another site: reload the page and try again.",
    },
    "signed_out": {"zh": "您已退出登录。", "en": "You have signed out."},
    "change_title": {"zh": "设置新密码", "en": "Choose your new password"},
    "one_time_notice": {
        "zh": "您使用的是控制台上显示的一次性密码。它只能用这一次：请现在设置您自己的密码，"
        "设置完成前无法使用其他功能。",
        "en": "You signed in with the one-time password shown on the console. It works only "
        "this once: choose your own password now; nothing else is available until you do.",
    },
    "current_password": {"zh": "当前密码", "en": "Current password"},
    "new_password": {
        "zh": f"新密码（至少 {MIN_PASSWORD_LENGTH} 个字符）",
        "en": f"New password (at least {MIN_PASSWORD_LENGTH} characters)",
    },
    "confirm_password": {"zh": "再次输入新密码", "en": "New password again"},
    "change_password": {"zh": "修改密码", "en": "Change password"},
    "wrong_current": {"zh": "当前密码不正确。", "en": "The current password is wrong."},
    "password_changed": {
        "zh": "密码已修改，其他设备上的登录已全部退出。",
        "en": "Password changed; every other sign-in of yours has been ended.",
    },
    PasswordProblem.TOO_SHORT: {
        "zh": f"新密码太短：至少需要 {MIN_PASSWORD_LENGTH} 个字符。",
        "en": f"The new password is too short: it needs at least {MIN_PASSWORD_LENGTH} characters.",
    },
    PasswordProblem.TOO_LONG: {
        "zh": f"新密码太长：最多 {MAX_PASSWORD_LENGTH} 个字符。",
        "en": f"The new password is too long: at most {MAX_PASSWORD_LENGTH} characters.",
    },
    PasswordProblem.SAME_AS_OLD: {
        "zh": "新密码不能与当前密码（一次性密码）相同。",
        "en": "The new password must differ from the current (one-time) password.",
    },
    PasswordProblem.MISMATCH: {
        "zh": "两次输入的新密码不一致。",
        "en": "The two entries of the new password differ.",
    },
    PasswordProblem.NOT_PRINTABLE: {
        "zh": "新密码不能包含控制字符。",
        "en": "The new password may not contain control characters.",
    },
    "switch_running": {
        "zh": "交换机已运行 {seconds} 秒（进程号 {pid}），数据目录",
        "en": "Switch running since {seconds} s (pid {pid}), data in",
    },
    "listening": {"zh": "监听", "en": "Listening"},
    "not_in_build": {"zh": "此版本不提供", "en": "not available in this build"},
    "configuration": {"zh": "配置", "en": "Configuration"},
    "queues": {"zh": "队列", "en": "Queues"},
    "queue": {"zh": "队列", "en": "queue"},
    "skill": {"zh": "技能", "en": "skill"},
    "strategy": {"zh": "策略", "en": "strategy"},
    "waiting": {"zh": "排队中", "en": "waiting"},
    "no_queues": {
        "zh": "尚未配置队列。请用以下命令导入配置：",
        "en": "No queues configured. Import a configuration with",
    },
    "media_core": {"zh": "媒体核心", "en": "Media core"},
    "switch_down": {
        "zh": "交换机没有在控制套接字上应答。",
        "en": "The switch does not answer on its control socket.",
    },
}

for _key, _texts in TEXTS.items():
    if set(_texts) != set(LANGUAGES):
        raise RuntimeError(f"web text {_key!r} lacks {set(LANGUAGES) - set(_texts)}")


def translate(language: str, key: str, **values: Any) -> str:
    """The text ``key`` in ``language``, with ``values`` filled in."""
    text = TEXTS[key][language]
    return text.format(**values) if values else text


def negotiate(accept_language: str | None, default: str) -> str:
    """The best of ``LANGUAGES`` for an ``Accept-Language`` header (RFC 9110 12.5.4).

    Ranges are taken by their primary tag (``zh-CN``, ``zh-Hans`` and ``zh``
    all mean Chinese); the highest weight wins, the earlier range on a tie.
    A malformed range is skipped; nothing usable gives ``default``.
    """
    best, best_q = default, 0.0
    for item in (accept_language or "").split(",")[:32]:
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().split("-")[0].lower()
        if primary not in LANGUAGES:
            continue
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                continue
            if not 0.0 <= q <= 1.0:
                continue
        if q > best_q:
            best, best_q = primary, q
    return best

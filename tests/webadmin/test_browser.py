"""The first web sign-in in a real browser: Debian's headless Chromium through chromedriver.

The web process runs as ``callbox web`` does (``python -m appliance web``)
on a data folder holding the admin's one-time password; the browser is sent
from ``/`` to the sign-in page, signs in with that password, is made to
choose a new one and lands on the status page, once per UI language.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from appliance.webadmin.accounts import ONE_TIME_PASSWORD_FILE
from tests.sip.net import free_port
from tests.webadmin.conftest import ADMIN_ONE_TIME, prepare_data

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (scripts/install-system-deps)",
    ),
]
WAIT_S = 30.0


@pytest.fixture
def web_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "var"
    prepare_data(data)
    port = free_port()
    env = dict(
        os.environ,
        CALLBOX_DATA_DIR=str(data),
        CALLBOX_WEB_HOST="127.0.0.1",
        CALLBOX_WEB_PORT=str(port),
    )
    env.pop("CALLBOX_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "web"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the web process did not listen:\n{process.communicate()[0]}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", data
    process.terminate()
    process.communicate(timeout=30)


@pytest.fixture(params=["zh-CN", "en-US"])
def browser(request: pytest.FixtureRequest) -> Iterator[tuple[WebDriver, str]]:
    """Headless Chromium whose Accept-Language is the parameter; the UI language it expects."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--lang={request.param}"):  # fmt: skip
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": request.param})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    yield driver, request.param[:2]
    driver.quit()


TEXTS = {
    "zh": {
        "sign_in": "登录 Callbox",
        "change": "设置新密码",
        "down": "交换机没有在控制套接字上应答。",
    },
    "en": {
        "sign_in": "Sign in to Callbox",
        "change": "Choose your new password",
        "down": "The switch does not answer on its control socket.",
    },
}


def test_first_sign_in_with_the_one_time_password_in_a_browser(
    web_process: tuple[str, Path], browser: tuple[WebDriver, str]
) -> None:
    base, data = web_process
    driver, language = browser
    texts = TEXTS[language]
    wait = WebDriverWait(driver, WAIT_S)

    driver.get(base + "/")
    wait.until(expected_conditions.url_contains("/login?next=%2F"))
    assert driver.find_element(By.TAG_NAME, "h1").text == texts["sign_in"]
    driver.find_element(By.ID, "username").send_keys("admin")
    driver.find_element(By.ID, "password").send_keys(ADMIN_ONE_TIME)
    driver.find_element(By.ID, "sign-in").click()

    wait.until(expected_conditions.url_to_be(base + "/password"))
    assert driver.find_element(By.TAG_NAME, "h1").text == texts["change"]
    assert driver.find_element(By.ID, "one-time").is_displayed()
    new_password = "browser-chosen-2026"
    driver.find_element(By.ID, "new").send_keys(new_password)
    driver.find_element(By.ID, "confirm").send_keys(new_password)
    driver.find_element(By.ID, "change").click()

    wait.until(expected_conditions.url_to_be(base + "/"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Callbox 0.1.0"
    assert texts["down"] in driver.page_source
    assert not (data / ONE_TIME_PASSWORD_FILE).exists()

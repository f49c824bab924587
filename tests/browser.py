"""Headless Chromium (Debian's chromium and chromium-driver, which ./runtests installs)
driven by Selenium, for the tests where a page is involved."""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def start_chromium(*arguments: str, console_log: bool = False) -> webdriver.Chrome:
    """A headless Chromium with ``arguments`` added (``--ignore-certificate-errors`` for a
    test's own certificate: the user's "proceed"); ``console_log`` keeps the pages'
    console messages for ``get_log("browser")``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", *arguments):
        options.add_argument(argument)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver

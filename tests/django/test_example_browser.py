"""The example project in headless Chromium (Debian's chromium and chromium-driver, through
Selenium), served by ``manage.py runserver``: the home page's static CSS and JS load with no
browser errors, and a chat message typed in one window appears in a second one."""

from __future__ import annotations

import signal
import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as conditions
from selenium.webdriver.support.ui import WebDriverWait

from ..browser import start_chromium
from ..django_helpers import BANNER_RE, LISTEN_RE, ManageProcess, run_manage


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """runserver on a migrated database; yields (process, base URL)."""
    db = tmp_path_factory.mktemp("browser") / "db.sqlite3"
    env = {"EXAMPLE_DB": str(db)}
    result = run_manage("migrate", "-v", "0", env=env)
    assert result.returncode == 0, result.stdout
    server = ManageProcess(["runserver", "127.0.0.1:0", "--noreload"], env=env)
    try:
        match = server.wait_for(BANNER_RE)
        yield server, f"http://127.0.0.1:{match.group(2)}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium("--window-size=1024,768", console_log=True)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, timeout=20):
    return WebDriverWait(driver, timeout)


def severe_console_messages(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_home_page_loads_its_static_files(site, browser):
    server, base = site
    browser.get(base + "/")
    wait(browser).until(conditions.text_to_be_present_in_element(
        (By.ID, "js-status"), "JavaScript loaded from the static files."
    ))
    # the stylesheet applied: .ready is green
    colour = browser.find_element(By.ID, "js-status").value_of_css_property("color")
    assert colour in ("rgba(34, 102, 34, 1)", "rgb(34, 102, 34)"), colour
    assert severe_console_messages(browser) == []
    server.wait_for(r'"GET /static/demo/site.js HTTP/1.1" 200')
    server.wait_for(r'"GET /static/demo/site.css HTTP/1.1" 200')


def test_admin_pages_load_their_many_assets(site, browser):
    server, base = site
    for _ in range(3):  # again and again over the browser's keep-alive connections
        browser.get(base + "/admin/login/")
        wait(browser).until(conditions.presence_of_element_located((By.ID, "id_username")))
        # the admin's stylesheet applied
        header = browser.find_element(By.ID, "header")
        assert header.value_of_css_property("display") == "flex"
        assert severe_console_messages(browser) == []
    static_lines = [line for line in server.output.splitlines() if "GET /static/admin/" in line]
    assert len(static_lines) >= 5
    assert all('HTTP/1.1" 200' in line or 'HTTP/1.1" 304' in line for line in static_lines)


def open_room_twice(browser, base: str) -> tuple[str, str, str]:
    """A new chat room open in two windows, both connected: (room, first, second)."""
    room = "room-" + uuid.uuid4().hex[:8]
    browser.get(f"{base}/chat/{room}/")
    first = browser.current_window_handle
    browser.switch_to.new_window("window")
    browser.get(f"{base}/chat/{room}/")
    second = browser.current_window_handle
    for handle in (first, second):
        browser.switch_to.window(handle)
        wait(browser).until(conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                     "Connected."))
    return room, first, second


def test_chat_message_typed_in_one_window_appears_in_another(site, browser):
    server, base = site
    room, first, second = open_room_twice(browser, base)
    browser.switch_to.window(first)
    author = browser.find_element(By.ID, "author")
    author.clear()
    author.send_keys("ada")
    browser.find_element(By.ID, "text").send_keys("typed in the first window")
    browser.find_element(By.CSS_SELECTOR, "#send button").click()
    browser.switch_to.window(second)
    wait(browser).until(conditions.text_to_be_present_in_element(
        (By.ID, "log"), "ada: typed in the first window"
    ))
    assert severe_console_messages(browser) == []
    server.wait_for(rf"WebSocket CONNECT /ws/chat/{room}/")


def test_server_log_is_clean_after_the_browser_tests(site, browser):
    server, base = site
    browser.get("about:blank")  # the pages close their keep-alive and WebSocket connections
    server.signal(signal.SIGINT, group=True)
    assert server.wait_exit() == 0
    output = server.output
    assert "Traceback" not in output
    assert "took too long" not in output
    assert "ERROR" not in output


def test_chat_page_reconnects_after_a_reload(tmp_path, redis_url, browser):
    """A SIGHUP reload closes every WebSocket with 1001 as the old workers drain; the chat
    page reconnects by itself (to the new workers) and messages flow again, across the
    two workers through Redis."""
    env = {"EXAMPLE_DB": str(tmp_path / "db.sqlite3"), "REDIS_URL": redis_url,
           "EXAMPLE_STATIC_ROOT": str(tmp_path / "static")}
    assert run_manage("migrate", "-v", "0", env=env).returncode == 0
    assert run_manage("collectstatic", "--noinput", "-v", "0", env=env).returncode == 0
    server = ManageProcess(["daphne", "-p", "0", "--workers", "2", "--static"], env=env)
    try:
        base = f"http://127.0.0.1:{server.wait_for(LISTEN_RE).group(2)}"
        server.wait_for("Server ready")
        _room, first, second = open_room_twice(browser, base)
        server.signal(signal.SIGHUP)
        server.wait_for(r"Reloaded: workers")
        for handle in (first, second):
            browser.switch_to.window(handle)
            # the page saw the close (1001 from the draining worker), then came back
            closed = wait(browser).until(lambda driver: driver.find_element(
                By.ID, "status").get_attribute("data-last-close"))
            assert closed == "1001"
            wait(browser).until(conditions.text_to_be_present_in_element((By.ID, "status"),
                                                                         "Connected."))
        browser.switch_to.window(first)
        browser.find_element(By.ID, "text").send_keys("after the reload")
        browser.find_element(By.CSS_SELECTOR, "#send button").click()
        browser.switch_to.window(second)
        wait(browser).until(conditions.text_to_be_present_in_element(
            (By.ID, "log"), "guest: after the reload"
        ))
        browser.close()
        browser.switch_to.window(first)
        browser.get("about:blank")
    finally:
        server.stop()

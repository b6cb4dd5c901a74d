"""`meqg app --web` driven in a real headless browser (Debian's chromium and chromium-driver).

textual-serve's page draws the terminal on a canvas, so the test reads what the page's terminal
was sent: a script put into the page before it loads records the websocket's bytes and the size
it asked for, and pyte (a VT100 emulator) turns them back into the screen's text. A screenshot of
the page is kept as evidence (its path is printed).
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no headless browser here: install chromium and chromium-driver (make test does, as root on Debian)",
)

RECORDER = """
(() => {
  const Native = window.WebSocket;
  window.__meqg = {chunks: [], size: null};
  function record(event) {
    if (typeof event.data === "string") return;
    const bytes = new Uint8Array(event.data);
    let text = "";
    for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    window.__meqg.chunks.push(btoa(text));
  }
  function Recorded(url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    socket.addEventListener("message", record);
    const send = socket.send.bind(socket);
    socket.send = (data) => {
      try { const m = JSON.parse(data); if (m[0] === "resize") window.__meqg.size = m[1]; } catch (e) {}
      return send(data);
    };
    return socket;
  }
  Recorded.prototype = Native.prototype;
  for (const key of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Recorded[key] = Native[key];
  window.WebSocket = Recorded;
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def screen_text(driver) -> str:
    """The browser terminal's screen, rebuilt from the bytes its page received."""
    import pyte

    state = driver.execute_script("return window.__meqg")
    if not state or not state["size"]:
        return ""
    screen = pyte.Screen(state["size"]["width"], state["size"]["height"])
    stream = pyte.ByteStream(screen)
    for chunk in state["chunks"]:
        stream.feed(base64.b64decode(chunk))
    return "\n".join(screen.display)


@pytest.fixture
def web_app(workbench_dir):
    port = free_port()
    exe = Path(sys.executable).with_name("meqg")
    log = open(workbench_dir / "web.log", "wb")
    server = subprocess.Popen(
        [str(exe), "app", "--web", "--port", str(port), "--store", "store", "--runs", "runs"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(url) or server.poll() is not None, 60, "meqg app --web did not answer")
        assert server.poll() is None, (workbench_dir / "web.log").read_text()
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_a_search_in_the_browser_shows_a_known_concept(web_app, small_store, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    concept = next(
        row for row in small_store.get(list(range(50))) if row["kind"] == "code" and "(" in row["text"].splitlines()[0]
    )
    query = concept["text"].splitlines()[0]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
        driver.get(web_app)
        wait_until(lambda: "concepts" in screen_text(driver), 90, "the store screen never drew in the browser")
        terminal = driver.find_element(By.CSS_SELECTOR, ".textual-terminal")
        ActionChains(driver).click(terminal).send_keys(query).perform()
        wait_until(lambda: f"hits for '{query}'" in screen_text(driver), 90, "no search results in the browser")
        text = screen_text(driver)
        assert query[:60] in text.split(f"hits for '{query}'", 1)[1]  # the concept is among the hits shown
        evidence = tmp_path / "meqg-app-in-chromium.png"
        driver.save_screenshot(str(evidence))
        print(f"screenshot: {evidence}")
        assert evidence.stat().st_size > 0
    finally:
        driver.quit()

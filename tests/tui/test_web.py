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
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no headless browser here: install chromium and chromium-driver (make test does, as root on Debian)",
)
TOKEN = "a-token-of-sixteen-or-more"

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


@pytest.fixture(params=[None])
def web_app(workbench_dir, request):
    """`meqg app --web` on the small store; its URL. Parametrized indirectly with a token."""
    port = free_port()
    exe = Path(sys.executable).with_name("meqg")
    log = open(workbench_dir / "web.log", "wb")
    token = ["--token", request.param] if request.param else []
    server = subprocess.Popen(
        [str(exe), "app", "--web", "--port", str(port), "--store", "store", "--runs", "runs", *token],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        with_token = url + (f"?token={request.param}" if request.param else "")
        wait_until(lambda: answers(with_token) or server.poll() is not None, 60, "meqg app --web did not answer")
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


@pytest.mark.parametrize("web_app", [TOKEN], indirect=True)
def test_with_a_token_nothing_is_served_without_it(web_app):
    for path in ("", "static/js/textual.js", "ws"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(web_app + path, timeout=10)
        assert refused.value.code == 401 and b"needs its token" in refused.value.read()
    with urllib.request.urlopen(web_app + f"?token={TOKEN}", timeout=10) as page:
        cookie = page.headers["Set-Cookie"]
        assert page.status == 200 and "textual-terminal" in page.read().decode()
    assert cookie.startswith(f"meqg_app_token={TOKEN};") and "HttpOnly" in cookie
    request = urllib.request.Request(web_app + "static/js/textual.js", headers={"Cookie": cookie.split(";")[0]})
    with urllib.request.urlopen(request, timeout=10) as script:
        assert script.status == 200


@needs_browser
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

"""Helpers of the documentation-site tests: build the site, check its links offline, drive headless
Chromium over a local HTTP server.

The browser part needs Debian's ``chromium`` (``make setup`` installs it as root); :func:`find_chromium`
says why it is missing otherwise.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from html.parser import HTMLParser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def build(out_dir: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """``sphinx -b html -W --keep-going`` of docs/ into ``out_dir`` (what ``make docs`` runs)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "flower_app")]),
               FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    argv = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", DOCS, out_dir]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# -- links -------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.resources = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
        if tag in ("img", "script", "iframe", "source") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])


@functools.lru_cache(maxsize=None)
def parse(path: str) -> _Page:
    page = _Page()
    with open(path, encoding="utf-8") as fh:
        page.feed(fh.read())
    return page


def is_external(url: str) -> bool:
    return bool(urllib.parse.urlsplit(url).scheme) or url.startswith("//")


def broken_links(site: str) -> list:
    """Every relative href/src of every HTML page of ``site`` that points to no file, or to no
    element id in an HTML target; as "page: link (why)" lines."""
    problems = []
    for folder, _, files in os.walk(site):
        if os.path.relpath(folder, site).split(os.sep)[0] == "_static":
            continue                    # the themes' template fragments, not pages
        for name in files:
            if not name.endswith(".html"):
                continue
            page_path = os.path.join(folder, name)
            page = parse(page_path)
            for url in page.links + page.resources:
                if is_external(url) or url.startswith(("mailto:", "javascript:")):
                    continue
                parts = urllib.parse.urlsplit(url)
                target = page_path if not parts.path else os.path.normpath(
                    os.path.join(folder, urllib.parse.unquote(parts.path)))
                if os.path.isdir(target):
                    target = os.path.join(target, "index.html")
                where = f"{os.path.relpath(page_path, site)}: {url}"
                if not os.path.exists(target):
                    problems.append(f"{where} (no file {os.path.relpath(target, site)})")
                elif parts.fragment and target.endswith(".html") and \
                        urllib.parse.unquote(parts.fragment) not in parse(target).ids:
                    problems.append(f"{where} (no element with id {parts.fragment!r})")
    return problems


def external_resources(site: str) -> list:
    """Scripts, stylesheets and images a page would fetch from another host (the site is offline)."""
    out = []
    for folder, _, files in os.walk(site):
        for name in files:
            if name.endswith(".html"):
                page = os.path.join(folder, name)
                out += [f"{os.path.relpath(page, site)}: {u}" for u in parse(page).resources if is_external(u)]
    return out


# -- the browser --------------------------------------------------------------------------------------
def find_chromium():
    """(path, None) or (None, why it is missing and whether it could be installed here)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path, None
    installable = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if installable:
        return None, ("no Chromium, but it can be installed here: run `make setup` (or apt-get install chromium)")
    return None, (f"no Chromium ({', '.join(BROWSERS)} not on PATH) and it cannot be installed here "
                  f"({'not root' if os.geteuid() else 'no apt-get'}): the browser checks did not run")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Server:
    """The built site on http://127.0.0.1:<free port>/ from a thread (a context manager)."""

    def __init__(self, directory: str):
        handler = functools.partial(_QuietHandler, directory=directory)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    commands on fd 3, replies on fd 4, NUL-separated JSON), so no driver or websocket library is
    needed. A context manager; every wait has a deadline (a hang guard, not a timing assertion)."""

    def __init__(self, browser: str, profile: str, timeout: float = 120):
        self.timeout = timeout
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        # the child's fds 3 and 4: dup the pipe ends there before exec
        def child_fds():
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)
        argv = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(cmd_r)
        os.close(out_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.send("Browser.close")
        except Exception:        # already gone: nothing to close
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._out_r)
        self.proc.stderr.close()

    def _read_message(self, deadline: float) -> dict:
        import select
        import time
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError("Chromium did not answer" + (f" (exited {self.proc.returncode})"
                                                                 if self.proc.poll() is not None else ""))
            ready, _, _ = select.select([self._out_r], [], [], left)
            if ready:
                chunk = os.read(self._out_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        import time
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, session: str) -> dict:
        import time
        deadline = time.monotonic() + self.timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == event and e.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def open(self, url: str, size=(1280, 1000)) -> str:
        """A new tab showing ``url`` after its load event; returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return session

    def evaluate(self, session: str, expression: str):
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str, path: str) -> None:
        import base64
        data = self.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))


# Run in a page after its load event: wait for MathJax's first typesetting, load every image eagerly,
# and report what a reader would see.
INSPECT = """(async () => {
  let mathjax = "absent";
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; mathjax = "ready"; } catch (e) { mathjax = "failed: " + e; }
  }
  const images = await Promise.all([...document.images].map(async img => {
    img.loading = "eager";
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    return {src: img.getAttribute("src"), ok: decoded && img.naturalWidth > 0};
  }));
  const math = [...document.querySelectorAll(".math")];
  return {mathjax, math: math.length, typeset: math.filter(m => m.querySelector("mjx-container")).length,
          containers: document.querySelectorAll("mjx-container").length,
          errors: document.querySelectorAll("mjx-merror").length, images};
})()"""


def inspect_pages(browser: str, site: str, pages: list, profile: str, screenshots: dict | None = None) -> list:
    """[{path, mathjax, math, typeset, containers, errors, images: [{src, ok}]}] per page, as headless
    Chromium shows them after MathJax ran (served over HTTP from ``site``); ``screenshots`` maps a
    page to the PNG path to write of it."""
    out = []
    with Server(site) as server, Chromium(browser, profile) as chrome:
        for page in pages:
            session = chrome.open(server.url + page)
            out.append(dict(chrome.evaluate(session, INSPECT), path=page))
            if screenshots and page in screenshots:
                chrome.screenshot(session, screenshots[page])
    return out

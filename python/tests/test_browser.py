"""wavelane.js in a real headless browser (Debian's chromium driven by playwright, no browser
download): the page subscribes and receives; Python closes its connection with 1012 and publishes
20 messages meanwhile, and the page has every one of them once, in order; messages the page
sends reach Python; a 4003 close ends the client.

Needs ``chromium`` (apt) and ``playwright`` (pip). ``.ci/run`` installs both and sets
``WAVELANE_REQUIRE_BROWSER=1``, which turns a missing browser into a failure instead of a skip.
"""

from __future__ import annotations

import os
import shutil
import time

import jwt
import pytest

SECRET = "browser-tests-secret-that-is-long-enough"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need_browser():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        sync_playwright = None
    if CHROMIUM is None or sync_playwright is None:
        msg = "needs Debian's chromium and PyPI's playwright"
        if os.environ.get("WAVELANE_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


PAGE = """<!doctype html><meta charset="utf-8"><title>wavelane.js test</title>
<script type="module">
import { Wavelane } from "/wavelane.js";
const params = new URLSearchParams(location.search);
window.got = []; window.states = []; window.resyncs = []; window.closes = [];
const client = new Wavelane("ws://" + location.host + "/ws", { token: params.get("t"), minBackoff: 100 });
window.client = client;
client.on("state", (s) => window.states.push(s));
client.on("resync", (t) => window.resyncs.push(t));
client.on("disconnect", (d) => window.closes.push(d.code));
const sub = client.subscribe("room:1", (data, meta) => window.got.push([meta.offset, data]));
sub.ready.then(() => { window.subscribed = true; });
</script>"""


def _start(handler=None, **config):
    import wavelane

    from conftest import Collector

    config.setdefault("client_topics", ["room:*"])
    server = wavelane.Server(port=0, threads=2, jwt_secret=SECRET, ws_path="/ws", **config)
    server.add_route("/page.html", PAGE)
    server.start()
    return server, Collector(server, handler)


def _wait(page, expr: str, timeout: float = 10.0):
    page.wait_for_function(expr, timeout=timeout * 1000)
    return page.evaluate(expr)


@pytest.fixture
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served():
    made = []

    def factory(handler=None, **config):
        s, c = _start(handler, **config)
        made.append((s, c))
        return s, c

    yield factory
    for s, c in made:
        c.close()
        s.stop(1.0)


def _open(browser, server, user="alice"):
    token = jwt.encode({"sub": user}, SECRET, algorithm="HS256")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{server.port}/page.html?t={token}")
    _wait(page, "window.subscribed === true")
    return page, errors


def test_page_reconnects_after_1012_and_has_every_publication_once_in_order(browser, served):
    server, events = served(history_size=100)
    page, errors = _open(browser, server)
    for i in range(3):
        server.publish("room:1", {"i": i})
    _wait(page, "window.got.length >= 3")
    conn = events.wait_kind("connect")[1]
    server.close(conn, 1012, "restart")
    for i in range(3, 23):
        server.publish("room:1", {"i": i})
    _wait(page, "window.got.length >= 23")
    time.sleep(0.3)  # anything duplicated would arrive now
    got = page.evaluate("window.got")
    assert [o for o, _ in got] == list(range(1, 24))
    assert [d["i"] for _, d in got] == list(range(23))
    assert page.evaluate("window.client.reconnects") == 1
    assert page.evaluate("window.closes") == [1012]
    assert page.evaluate("window.resyncs") == []
    assert len(events.of("connect")) == 2
    assert errors == []


def test_page_sends_reach_python_and_server_sends_reach_the_page(browser, served):
    server, events = served()
    page, errors = _open(browser, server)
    page.evaluate("window.client.send({hello: 'from the page'}); window.client.send('plain')")
    msgs = events.wait_count(lambda e: e[0] == "message", 2)
    assert [m[2] for m in msgs] == ['{"hello":"from the page"}', "plain"]
    page.evaluate("window.direct = []; window.client.on('message', (m) => window.direct.push(m))")
    server.send(msgs[0][1], "hi page")
    assert _wait(page, "window.direct.length && window.direct[0]") == "hi page"
    assert errors == []


def test_page_client_stops_after_4003(browser, served):
    server, events = served()
    page, errors = _open(browser, server)
    conn = events.wait_kind("connect")[1]
    server.close(conn, 4003, "revoked")
    assert _wait(page, "window.client.state === 'closed' && window.states.join(',')").endswith("closed")
    time.sleep(0.5)
    assert len(events.of("connect")) == 1  # it did not come back
    assert errors == []


def test_page_rpc_round_trip(browser, served):
    holder = {}

    def handler(event):
        kind, conn, data = event
        if kind == "rpc":
            if data["method"] == "add":
                holder["s"].reply(conn, data["id"], data["params"]["a"] + data["params"]["b"])
            else:
                holder["s"].reply(conn, data["id"], error={"code": "no_such_method", "message": "?"})

    server, events = served(handler)
    holder["s"] = server
    page, errors = _open(browser, server)
    assert page.evaluate("window.client.rpc('add', {a: 1, b: 2})") == 3
    assert page.evaluate("window.client.rpc('nope').then(() => 'ok', (e) => e.code)") == "no_such_method"
    assert errors == []


REFRESH_PAGE = """<!doctype html><meta charset="utf-8"><title>wavelane.js refresh</title>
<script type="module">
import { Wavelane } from "/wavelane.js";
window.closes = []; window.refreshed = [];
const client = new Wavelane("ws://" + location.host + "/ws", { getToken: () => window.mintToken(), refreshMargin: 1 });
window.client = client;
client.on("disconnect", (d) => window.closes.push(d.code));
client.on("refreshed", (exp) => window.refreshed.push(exp));
</script>"""


def test_page_refreshes_its_token_before_exp_and_stays_connected(browser, served):
    import wavelane

    from conftest import Collector

    server = wavelane.Server(port=0, threads=2, jwt_secret=SECRET, ws_path="/ws", jwt_leeway=0)
    server.add_route("/refresh.html", REFRESH_PAGE)
    server.start()
    events = Collector(server)
    try:
        lifetimes = iter([2, 60])  # the first token expires in 2 s; its refresh lives a minute

        def mint():
            return jwt.encode({"sub": "alice", "exp": int(time.time()) + next(lifetimes, 60)}, SECRET, algorithm="HS256")

        page = browser.new_page()
        page.expose_function("mintToken", mint)
        page.goto(f"http://127.0.0.1:{server.port}/refresh.html")
        _wait(page, "window.client.state === 'connected'")
        first_exp = page.evaluate("window.client.ready.exp")
        assert first_exp - time.time() <= 2.5
        _wait(page, "window.refreshed.length > 0", timeout=5)
        assert page.evaluate("window.refreshed[0]") > first_exp + 30
        time.sleep(max(0.0, first_exp - time.time()) + 1.5)  # past the first token's expiry
        assert page.evaluate("window.client.state") == "connected"
        assert page.evaluate("window.closes") == []
        assert len(events.of("connect")) == 1
        assert events.wait_kind("refresh")[2]["claims"]["sub"] == "alice"
    finally:
        events.close()
        server.stop(1.0)


def test_demo_page_chat_presence_and_counters(browser):
    """The demo (`python -m wavelane demo`) in the browser: two pages log in, see each other
    arrive, chat (own lines styled apart, nicks as the server verified them), see the counters."""
    from wavelane.__main__ import DemoState, handle_demo_events, make_demo_server

    from conftest import Collector

    import threading

    server = make_demo_server(port=0)
    server.start()
    state = DemoState()
    stop = threading.Event()

    def loop():  # run_demo's loop: empty drains too, so the counters go out every second
        while not stop.is_set():
            handle_demo_events(server, server.drain(timeout=0.2), state)

    driver = threading.Thread(target=loop, daemon=True)
    driver.start()
    for i in range(60):  # the room's past: a newcomer sees the last 50 (history) of them
        server.publish("room:lobby", {"type": "chat", "room": "lobby", "nick": "old", "conn": "0",
                                      "text": f"old line {i}", "ts": time.time()})
    pages = []
    try:
        for nick in ("ann", "bob"):
            page = browser.new_page(viewport={"width": 900, "height": 520})
            page.add_init_script(f"localStorage.setItem('wl-nick', '{nick}')")
            errors = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{server.port}/#room=lobby")
            _wait(page, "document.getElementById('status').textContent.includes('connected as')")
            pages.append((page, errors))
        ann, bob = pages[0][0], pages[1][0]
        _wait(ann, "document.getElementById('log').innerText.includes('old line 59')")
        old = ann.evaluate("[...document.querySelectorAll('#log li')].map(li => li.childNodes[1]?.textContent || '')"
                           ".filter(t => t.startsWith('old line ')).map(t => t.slice(9) * 1)")
        assert old == list(range(10, 60))  # the last 50, in order, once
        _wait(ann, "document.getElementById('here').textContent.includes('bob')")
        assert "bob joined" in ann.inner_text("#log")
        ann.fill("#text", "hello from ann")
        ann.press("#text", "Enter")
        _wait(bob, "document.getElementById('log').innerText.includes('hello from ann')")
        _wait(ann, "document.querySelector('#log li.mine') !== null")
        assert "hello from ann" in ann.inner_text("#log li.mine")
        assert bob.query_selector("#log li.mine") is None
        _wait(bob, "document.getElementById('stats').textContent.includes('online')", timeout=5)
        shot = os.environ.get("WAVELANE_DEMO_SCREENSHOT")
        if shot:  # docs/img/demo.png is made this way
            ann.screenshot(path=shot)
        assert pages[0][1] == [] and pages[1][1] == []
    finally:
        stop.set()
        driver.join(5)
        server.stop(1.0)

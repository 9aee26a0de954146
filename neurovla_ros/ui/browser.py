"""A headless Chromium driven through the Chrome DevTools Protocol: the page of the ``ui``
node in a real browser, for its test and ``neurovla bench teleop``. ROS-free.

``Browser(url)`` starts Debian's ``chromium`` (headless, software WebGL), opens ``url`` and
connects to the page's DevTools websocket; ``screenshot()`` returns the page as an RGB array;
``press(label, seconds)`` holds the left mouse button on the button labelled ``label`` (what a
person does), ``click(label)``, ``type_into(label, text)`` fill a text input by its label.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import numpy as np

CHROMIUM = ('chromium', 'chromium-browser', 'google-chrome')


def chromium() -> str:
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(f'no Chromium found (tried {", ".join(CHROMIUM)}); Debian: '
                            'apt-get install chromium')


class Browser:
    def __init__(self, url: str, width: int = 1280, height: int = 800, timeout: float = 60.0):
        from websockets.sync.client import connect
        self.profile = tempfile.mkdtemp(prefix='neurovla-chromium-')
        self.proc = subprocess.Popen(
            [chromium(), '--headless=new', '--no-sandbox', '--disable-gpu-sandbox',
             '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-first-run',
             '--no-default-browser-check', '--disable-extensions', '--mute-audio',
             f'--user-data-dir={self.profile}', '--remote-debugging-port=0',
             f'--window-size={width},{height}', url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)     # its own group: close() ends every process it made
        self.width, self.height = width, height
        port = self._devtools_port(timeout)
        end = time.monotonic() + timeout
        page = None
        while page is None and time.monotonic() < end:
            with urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=5) as r:
                page = next((t for t in json.load(r) if t['type'] == 'page'), None)
            if page is None:
                time.sleep(0.2)
        if page is None:
            self.close()
            raise RuntimeError('chromium opened no page')
        self.ws = connect(page['webSocketDebuggerUrl'], max_size=64 * 2 ** 20,
                          open_timeout=timeout)
        self._id = 0

    def _devtools_port(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            m = re.search(r'DevTools listening on ws://[^:]+:(\d+)/', line)
            if m:
                return int(m.group(1))
            if not line and self.proc.poll() is not None:
                break
        self.close()
        raise RuntimeError('chromium did not open its DevTools port')

    def send(self, method: str, **params):
        """One DevTools command; its result (events in between are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({'id': self._id, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get('id') == self._id:
                if 'error' in msg:
                    raise RuntimeError(f'{method}: {msg["error"]}')
                return msg.get('result', {})

    def evaluate(self, js: str):
        r = self.send('Runtime.evaluate', expression=js, returnByValue=True)
        return r.get('result', {}).get('value')

    def wait_for(self, js: str, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.evaluate(js):
                return True
            time.sleep(0.2)
        return False

    def screenshot(self) -> np.ndarray:
        from PIL import Image
        data = base64.b64decode(self.send('Page.captureScreenshot', format='png')['data'])
        return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))

    def _center(self, selector_js: str):
        box = self.evaluate(f'(() => {{ const e = {selector_js}; if (!e) return null; '
                            'e.scrollIntoView({block: "center"}); const r = '
                            'e.getBoundingClientRect(); return [r.x + r.width / 2, '
                            'r.y + r.height / 2]; })()')
        if box is None:
            raise LookupError(f'nothing on the page for {selector_js}')
        return box

    @staticmethod
    def button(label: str, what: str = 'button') -> str:
        return (f'[...document.querySelectorAll("{what}")].find(b => '
                f'b.textContent.trim() === {json.dumps(label)})')

    def mouse(self, kind: str, x: float, y: float) -> None:
        self.send('Input.dispatchMouseEvent', type=kind, x=x, y=y, button='left',
                  buttons=1 if kind == 'mousePressed' else 0, clickCount=1)

    def press(self, label: str, seconds: float, during=None) -> float:
        """Hold the left button on button ``label`` for ``seconds`` (``during()`` is called
        in between, repeatedly); returns the monotonic time of the press."""
        x, y = self._center(self.button(label))
        self.mouse('mouseMoved', x, y)
        t0 = time.monotonic()
        self.mouse('mousePressed', x, y)
        end = t0 + seconds
        while time.monotonic() < end:
            if during is not None:
                during()
            else:
                time.sleep(0.01)
        self.mouse('mouseReleased', x, y)
        return t0

    def click(self, label: str) -> None:
        self.press(label, 0.05)

    def type_into(self, label: str, text: str) -> None:
        """Type ``text`` into the text input labelled ``label`` (replacing what it holds)."""
        x, y = self._center(
            f'(l => l && document.getElementById(l.htmlFor))([...document.querySelectorAll('
            f'"label")].find(l => l.textContent.trim() === {json.dumps(label)}))')
        self.mouse('mousePressed', x, y)
        self.mouse('mouseReleased', x, y)
        self.send('Input.dispatchKeyEvent', type='rawKeyDown', key='a', code='KeyA',
                  modifiers=2, windowsVirtualKeyCode=65)
        self.send('Input.insertText', text=text)

    def close(self) -> None:
        ws = getattr(self, 'ws', None)
        if ws is not None:
            ws.close()
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:          # the group: renderer, GPU and zygote processes too
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

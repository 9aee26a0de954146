"""Websocket clients of remote policy servers: NeuroVLA/starVLA and openpi.

ROS-free and synchronous: the cortex calls them from its inference worker thread, never from
a ROS callback. Every failure becomes a :class:`PolicyError` with a ``kind`` the node turns into
a diagnostic; the connection is dropped and re-opened with exponential backoff, so a dead or
misbehaving server costs one clear error per attempt and nothing else.

Protocols (both: binary frames, msgpack-numpy (see ``codec``), no compression, one metadata map
sent by the server on connect):

* NeuroVLA/starVLA: request ``{type: 'infer'|'ping', request_id, payload}``; the infer payload
  has exactly ``batch_images`` (B lists of views, HxWx3 uint8), ``instructions`` (B strings) and
  ``states`` (Bx16x8 float32). Reply ``{status: 'ok', ok: True, type: 'inference_result',
  request_id, data: {normalized_actions: Bx2Qx7}}``; errors are ``{status: 'error', ok: False,
  error: {message}}`` or a text frame (traceback) followed by close code 1011. Only the
  documented keys are ever sent (the server has debug keys that write files).
* openpi: the request is the observation map itself, the reply a map with ``actions`` (HxD);
  a server error is a text frame with the traceback and close code 1011.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from .codec import CodecError, packb, unpackb

STATE_HISTORY = 16     # NeuroVLA: steps of state history sent per request
STATE_DIM = 8          # eef position (3), axis-angle (3), two gripper values
ACTION_DIM = 7         # 3 translation deltas, 3 rotation deltas, gripper
NEUROVLA_PAYLOAD_KEYS = ('batch_images', 'instructions', 'states')


class PolicyError(Exception):
    """A failed policy call. ``kind`` is one of: refused, backoff, timeout, closed, malformed,
    shape, server_error, too_large."""

    def __init__(self, kind: str, message: str):
        super().__init__(f'{kind}: {message}')
        self.kind = kind
        self.message = message


class WebsocketPolicyClient:
    """One websocket connection to a policy server, re-opened with backoff after any failure.

    ``connect_timeout`` [s] bounds the TCP + websocket handshake + metadata frame;
    ``reply_timeout`` [s] bounds each reply; ``max_reply_bytes`` each frame the server sends
    (larger: the connection is closed with 1009, kind ``too_large``) and ``max_array_elements``
    each array in it (kind ``malformed``). After ``n`` consecutive failures no connection is
    attempted for ``min(backoff_max, backoff_initial * 2**(n-1))`` seconds (calls in that window
    fail fast with kind ``backoff``, their message naming the outage's cause). ``outage`` is
    ``None`` while healthy, else ``(kind, message, since)`` of the failure that began it (the
    cause, kept through the back-off; ``since`` on ``clock``).
    """

    def __init__(self, uri: str, connect_timeout: float = 2.0, reply_timeout: float = 1.0,
                 backoff_initial: float = 0.25, backoff_max: float = 5.0,
                 max_reply_bytes: int = 16_000_000, max_array_elements: int = 1_000_000,
                 clock=time.monotonic):
        self.uri = uri
        self.max_reply_bytes, self.max_array_elements = max_reply_bytes, max_array_elements
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock
        self._ws = None
        self.metadata: dict | None = None
        self.failures = 0          # consecutive failures
        self.reconnects = 0        # successful connections after the first
        self._connected_once = False
        self._retry_at = 0.0
        self.outage: tuple[str, str, float] | None = None

    # ---- connection ----
    @property
    def connected(self) -> bool:
        return self._ws is not None

    def connect(self) -> dict:
        """Open the connection and read the server's metadata map (the first frame)."""
        self.close()
        try:
            ws = connect(self.uri, open_timeout=self.connect_timeout, compression=None,
                         max_size=self.max_reply_bytes, proxy=None, ping_interval=None,
                         close_timeout=0.5, user_agent_header=None)
        except ConnectionRefusedError as e:
            raise PolicyError('refused', f'{self.uri}: connection refused ({e.strerror})') from None
        except (TimeoutError, InvalidHandshake, InvalidURI, OSError) as e:
            raise PolicyError('refused', f'{self.uri}: cannot connect ({e!r})') from None
        try:
            meta = ws.recv(timeout=self.connect_timeout)
        except TimeoutError:
            ws.close()
            raise PolicyError('timeout', f'no metadata within {self.connect_timeout} s') from None
        except ConnectionClosed as e:
            raise PolicyError('closed', f'closed before metadata ({_close_text(e)})') from None
        if isinstance(meta, str):
            ws.close()
            raise PolicyError('server_error',
                              f'text frame instead of metadata: {_first_line(meta)}')
        try:
            meta = unpackb(meta, self.max_array_elements)
        except CodecError as e:
            ws.close()
            raise PolicyError('malformed', f'metadata: {e}') from None
        if not isinstance(meta, dict):
            ws.close()
            raise PolicyError('malformed', f'metadata is a {type(meta).__name__}, not a map')
        self._ws, self.metadata = ws, meta
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True
        return meta

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass

    def _ensure_connected(self) -> None:
        if self._ws is not None:
            return
        now = self._clock()
        if now < self._retry_at:
            kind, message, since = self.outage or ('', '', now)
            raise PolicyError('backoff', f'reconnecting to {self.uri} in '
                                         f'{self._retry_at - now:.1f} s; down for '
                                         f'{now - since:.1f} s after {kind}: {message}')
        self.connect()

    def _failed(self, error: PolicyError) -> None:
        """Drop the connection after ``error`` and schedule the next attempt."""
        self.close()
        if self.outage is None:
            self.outage = (error.kind, error.message, self._clock())
        self.failures += 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (self.failures - 1))
        self._retry_at = self._clock() + delay

    # ---- one exchange ----
    def call(self, message: dict, accept=None) -> dict:
        """Send ``message``; return the first reply map for which ``accept(reply)`` is true.

        Any failure drops the connection (a late reply would otherwise be taken for the next
        request's), schedules the backoff and raises :class:`PolicyError`.
        """
        try:
            self._ensure_connected()
            reply = self._exchange(message, accept)
        except PolicyError as e:
            if e.kind != 'backoff':
                self._failed(e)
            raise
        self.failures = 0
        self.outage = None
        return reply

    def _exchange(self, message: dict, accept) -> dict:
        ws = self._ws
        try:
            ws.send(packb(message))
        except ConnectionClosed as e:
            raise PolicyError('closed', f'connection closed ({_close_text(e)})') from None
        deadline = self._clock() + self.reply_timeout
        while True:
            left = deadline - self._clock()
            if left <= 0:
                raise PolicyError('timeout', f'no reply within {self.reply_timeout} s')
            try:
                raw = ws.recv(timeout=left)
            except TimeoutError:
                raise PolicyError('timeout', f'no reply within {self.reply_timeout} s') from None
            except ConnectionClosed as e:
                if e.sent is not None and e.sent.code == 1009:    # we refused a large frame
                    raise PolicyError('too_large', f'a reply frame over max_reply_bytes '
                                                   f'({self.max_reply_bytes} bytes)') from None
                raise PolicyError('closed', f'connection closed ({_close_text(e)})') from None
            if isinstance(raw, str):   # the server's traceback; close code 1011 follows
                raise PolicyError('server_error', f'server raised: {_last_line(raw)}')
            try:
                reply = unpackb(raw, self.max_array_elements)
            except CodecError as e:
                raise PolicyError('malformed', str(e)) from None
            if not isinstance(reply, dict):
                raise PolicyError('malformed', f'reply is a {type(reply).__name__}, not a map')
            if accept is None or accept(reply):
                return reply


def _close_text(e: ConnectionClosed) -> str:
    rcvd = e.rcvd
    return f'code {rcvd.code} {rcvd.reason!r}' if rcvd is not None else 'no close frame'


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else '(empty)'


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1][:200] if text.strip() else '(empty)'


def _finite_array(value, name: str) -> np.ndarray:
    if isinstance(value, list):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise PolicyError('malformed', f'{name} is not numeric') from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in 'fiu':
        raise PolicyError('malformed', f'{name} is not a numeric array '
                                       f'({type(value).__name__})')
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)):
        raise PolicyError('malformed', f'{name} contains NaN or inf')
    return value


class NeuroVLAClient:
    """Client of a NeuroVLA / starVLA policy server (protocol in the module docstring)."""

    def __init__(self, uri: str, **kw):
        self.conn = WebsocketPolicyClient(uri, **kw)
        self._ids = itertools.count(1)

    @property
    def metadata(self):
        return self.conn.metadata

    def ping(self) -> dict:
        rid = f'ping-{next(self._ids)}'
        reply = self.conn.call({'type': 'ping', 'request_id': rid},
                               accept=lambda r: r.get('request_id', rid) == rid)
        self._check_status(reply)
        return reply

    def infer(self, batch_images, instructions, states) -> np.ndarray:
        """normalized_actions (B x T x 7, float64 in [-1, 1]) for one batch of observations.

        ``batch_images``: B lists of HxWx3 uint8 views; ``instructions``: B strings;
        ``states``: B x 16 x 8. Only these three keys are sent.
        """
        b = len(instructions)
        states = np.asarray(states, dtype=np.float32)
        if len(batch_images) != b or states.shape != (b, STATE_HISTORY, STATE_DIM):
            raise ValueError(f'batch of {b}: got {len(batch_images)} image lists and states '
                             f'{states.shape}, need ({b}, {STATE_HISTORY}, {STATE_DIM})')
        images = [[np.ascontiguousarray(v, dtype=np.uint8) for v in views]
                  for views in batch_images]
        rid = f'infer-{next(self._ids)}'
        payload = {'batch_images': images, 'instructions': [str(s) for s in instructions],
                   'states': states}
        assert tuple(payload) == NEUROVLA_PAYLOAD_KEYS
        reply = self.conn.call({'type': 'infer', 'request_id': rid, 'payload': payload},
                               accept=lambda r: r.get('request_id', rid) == rid)
        try:
            self._check_status(reply)
            data = reply.get('data')
            if not isinstance(data, dict) or 'normalized_actions' not in data:
                raise PolicyError('malformed', 'reply has no data.normalized_actions')
            acts = _finite_array(data['normalized_actions'], 'normalized_actions')
            if acts.ndim != 3 or acts.shape[0] != b or acts.shape[2] != ACTION_DIM \
                    or acts.shape[1] < 1:
                raise PolicyError('shape', f'normalized_actions has shape {acts.shape}, '
                                           f'expected ({b}, T, {ACTION_DIM})')
        except PolicyError as e:
            self.conn._failed(e)
            raise
        return acts

    def _check_status(self, reply: dict) -> None:
        if reply.get('status') == 'error' or reply.get('ok') is False:
            err = reply.get('error')
            msg = err.get('message') if isinstance(err, dict) else err
            raise PolicyError('server_error', str(msg or 'unspecified server error')[:300])
        if reply.get('status') != 'ok':
            raise PolicyError('malformed', f'reply status is {reply.get("status")!r}')

    def close(self):
        self.conn.close()


class OpenpiClient:
    """Client of an openpi-style policy server: observation map in, ``actions`` (H x D) out."""

    def __init__(self, uri: str, action_dim: int = ACTION_DIM, **kw):
        self.conn = WebsocketPolicyClient(uri, **kw)
        self.action_dim = action_dim

    @property
    def metadata(self):
        return self.conn.metadata

    def infer(self, observation: dict) -> dict:
        """The server's reply map; ``reply['actions']`` is validated as finite H x D (D >= the
        expected action_dim) float64."""
        reply = self.conn.call(observation)
        try:
            if 'actions' not in reply:
                raise PolicyError('malformed', f'reply has no actions (keys {sorted(reply)[:8]})')
            acts = _finite_array(reply['actions'], 'actions')
            if acts.ndim == 1:
                acts = acts[None]
            if acts.ndim != 2 or acts.shape[0] < 1 or acts.shape[1] < self.action_dim:
                raise PolicyError('shape', f'actions has shape {acts.shape}, expected '
                                           f'(H, >={self.action_dim})')
        except PolicyError as e:
            self.conn._failed(e)
            raise
        reply['actions'] = acts
        return reply

    def close(self):
        self.conn.close()

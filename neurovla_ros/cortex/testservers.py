"""Project-written policy servers that speak the NeuroVLA/starVLA and openpi protocols exactly.

ROS-free. Used by the tests (every failure mode a client must survive) and by the benchmark
(protocol overhead against a server that does no work). Each server runs one asyncio event loop
in a background thread on 127.0.0.1 (port 0 = any free port), as the real servers do, and can
change behaviour at run time through ``mode``:

=============  ==========================================================================
``ok``         a correct reply (``policy(request) -> actions`` decides the numbers)
``slow``       a correct reply after ``delay`` seconds
``hang``       never replies (the request is read and dropped)
``malformed``  bytes that are not msgpack
``wrong_shape`` a well-formed map whose action array has the wrong shape
``nan``        actions containing NaN
``error``      the policy raises: NeuroVLA answers ``{status: 'error', ok: False, error:
               {message}}`` (its server turns policy exceptions into an error map);
               openpi sends the traceback and closes with 1011 (it has no error map)
``crash``      the reply cannot be sent (packing fails): a text frame with the traceback,
               then close code 1011 (internal error), on both
``close``      closes the connection (code 1000) instead of answering
=============  ==========================================================================

Requests are checked against the protocol; anything undocumented (extra keys, wrong dtypes or
shapes) is recorded in ``violations`` and answered as the real server would, with an error.
NeuroVLA answers ``ping`` with type ``ping``; openpi replies carry ``policy_timing`` (the
policy's own) and ``server_timing`` (``infer_ms``, and ``prev_total_ms`` from the second
request on), as openpi's server adds them.
"""
from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections import deque
from http import HTTPStatus

import numpy as np
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from .clients import ACTION_DIM, NEUROVLA_PAYLOAD_KEYS, STATE_DIM, STATE_HISTORY
from .codec import CodecError, packb, unpackb

MODES = ('ok', 'slow', 'hang', 'malformed', 'wrong_shape', 'nan', 'error', 'crash', 'close')


class _Server:
    """A websocket server on one asyncio event loop (its own thread), as the real servers run:
    metadata on connect, then one reply per request. The policy runs synchronously inside the
    loop, so a slow policy (mode ``slow``) also stalls every other connection's handshake, as
    it does on the real servers."""

    def __init__(self, metadata: dict, host: str = '127.0.0.1', port: int = 0,
                 mode: str = 'ok', delay: float = 0.0):
        self.metadata = metadata
        self.mode = mode
        self.delay = delay
        self.requests: deque = deque(maxlen=64)
        self.violations: list[str] = []
        self.connections = 0
        self.served = 0
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True,
                                        name=f'{type(self).__name__}')
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error

    def _run(self, port: int) -> None:
        self._loop.run_until_complete(self._serve(port))

    async def _serve(self, port: int) -> None:
        self._stopped = self._loop.create_future()
        try:
            server = await serve(self._handle, self.host, port, compression=None, max_size=None,
                                 ping_interval=None, process_request=self._http)
        except OSError as e:
            self._error = e
            self._started.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        await self._stopped
        server.close()
        await server.wait_closed()

    @property
    def uri(self) -> str:
        return f'ws://{self.host}:{self.port}'

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(
                lambda: self._stopped.done() or self._stopped.set_result(None))
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # openpi servers answer GET /healthz; a plain HTTP request elsewhere gets the handshake.
    def _http(self, connection, request):
        if request.path == '/healthz':
            return connection.respond(HTTPStatus.OK, 'OK\n')
        return None

    async def _handle(self, ws) -> None:
        self.connections += 1
        await ws.send(packb(self.metadata))
        prev_total_ms = None
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed:
                return
            t0 = time.perf_counter()
            mode = self.mode
            try:
                request = unpackb(raw)
                if not isinstance(request, dict):
                    raise CodecError('request is not a map')
            except CodecError as e:
                self.violations.append(f'undecodable request: {e}')
                await self._crash(ws, e)
                return
            self.requests.append(request)
            if mode == 'hang':
                continue
            if mode == 'close':
                await ws.close(1000, 'going away')
                return
            if mode == 'slow':
                time.sleep(self.delay)     # blocking, like a slow policy on the real loop
            if mode == 'malformed':
                await ws.send(b'\xc1\xc1 this is not msgpack')
                continue
            try:
                reply = self.reply(request, mode, prev_total_ms)
                if mode == 'crash':
                    raise RuntimeError('policy crashed (test server mode "crash")')
                data = packb(reply)
            except Exception as e:  # noqa: BLE001 - the real servers turn these into 1011
                await self._crash(ws, e)
                return
            self.served += 1
            try:
                await ws.send(data)
            except ConnectionClosed:
                return
            prev_total_ms = 1e3 * (time.perf_counter() - t0)

    async def _crash(self, ws, exc: Exception) -> None:
        text = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            await ws.send(text)
            await ws.close(1011, 'Internal server error. Traceback included in previous frame.')
        except ConnectionClosed:
            pass

    def reply(self, request: dict, mode: str, prev_total_ms: float | None) -> dict:
        raise NotImplementedError


def _zeros(steps: int, dim: int):
    return lambda _request: np.zeros((steps, dim), np.float32)


class NeuroVLATestServer(_Server):
    """A NeuroVLA/starVLA policy server: ``{type, request_id, payload}`` in, ``normalized_actions``
    (B x 2Q x 7) out. ``policy(payload) -> 2Q x 7`` array per batch element (default: zeros)."""

    def __init__(self, chunk: int = 16, policy=None, **kw):
        self.chunk = chunk
        self.policy = policy or _zeros(chunk, ACTION_DIM)
        meta = {'server': 'neurovla-test', 'action_chunk': chunk, 'action_dim': ACTION_DIM,
                'state_history': STATE_HISTORY, 'state_dim': STATE_DIM}
        super().__init__(meta, **kw)

    def _check(self, request: dict) -> str | None:
        extra = set(request) - {'type', 'request_id', 'payload'}
        if extra:
            return f'undocumented request keys {sorted(extra)}'
        kind = request.get('type', 'infer')
        if kind == 'ping':
            return None
        if kind != 'infer':
            return f'unknown request type {kind!r}'
        p = request.get('payload', request)
        if not isinstance(p, dict) or tuple(sorted(p)) != tuple(sorted(NEUROVLA_PAYLOAD_KEYS)):
            return f'payload keys {sorted(p) if isinstance(p, dict) else p!r}, expected ' \
                   f'{sorted(NEUROVLA_PAYLOAD_KEYS)}'
        imgs, instr, states = p['batch_images'], p['instructions'], p['states']
        b = len(instr) if isinstance(instr, list) else -1
        if b < 1 or not all(isinstance(s, str) for s in instr):
            return 'instructions must be a non-empty list of strings'
        if not isinstance(imgs, list) or len(imgs) != b:
            return 'batch_images must be a list with one entry per instruction'
        for views in imgs:
            if not isinstance(views, list) or not views:
                return 'each batch_images entry must be a non-empty list of views'
            for v in views:
                if not (isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 3
                        and v.shape[2] == 3):
                    return 'each view must be an HxWx3 uint8 array'
        if not (isinstance(states, np.ndarray) and states.dtype == np.float32
                and states.shape == (b, STATE_HISTORY, STATE_DIM)):
            return f'states must be float32 ({b}, {STATE_HISTORY}, {STATE_DIM})'
        return None

    def reply(self, request: dict, mode: str, prev_total_ms: float | None) -> dict:
        rid = request.get('request_id')
        problem = self._check(request)
        if problem:
            self.violations.append(problem)
            return {'status': 'error', 'ok': False, 'request_id': rid,
                    'error': {'message': problem}}
        if request.get('type') == 'ping':
            return {'status': 'ok', 'ok': True, 'type': 'ping', 'request_id': rid}
        payload = request.get('payload', request)
        b = len(payload['instructions'])
        try:
            if mode == 'error':
                raise RuntimeError('CUDA out of memory (test server mode "error")')
            acts = np.stack([np.asarray(self.policy(payload), np.float32) for _ in range(b)])
        except Exception as e:  # noqa: BLE001 - the server answers policy errors with a map
            return {'status': 'error', 'ok': False, 'request_id': rid,
                    'error': {'message': f'{type(e).__name__}: {e}'}}
        if mode == 'wrong_shape':
            acts = acts[..., :ACTION_DIM - 2]
        elif mode == 'nan':
            acts = acts.copy()
            acts[0, 0, 0] = np.nan
        return {'status': 'ok', 'ok': True, 'type': 'inference_result', 'request_id': rid,
                'data': {'normalized_actions': acts}}


# openpi's input transforms (LiberoInputs, DroidInputs): the keys they read, what each must be
OPENPI_LAYOUTS = {
    'libero': {'observation/image': 'image', 'observation/wrist_image': 'image',
               'observation/state': (8,), 'prompt': 'text'},
    'droid': {'observation/exterior_image_1_left': 'image',
              'observation/wrist_image_left': 'image', 'observation/joint_position': (7,),
              'observation/gripper_position': (1,), 'prompt': 'text'},
}
OPENPI_ACTION_DIMS = {'libero': 7, 'droid': 8}
OPENPI_IMAGE = (224, 224, 3)


def openpi_layout_problem(layout: str, obs: dict) -> str | None:
    """What openpi's input transform for ``layout`` would fail on (a KeyError, a wrong shape or
    dtype), or None; keys it does not read count as undocumented."""
    want = OPENPI_LAYOUTS[layout]
    missing = sorted(set(want) - set(obs))
    if missing:
        return f'{layout}: missing {missing}'
    extra = sorted(set(obs) - set(want))
    if extra:
        return f'{layout}: undocumented keys {extra}'
    for key, kind in want.items():
        v = obs[key]
        if kind == 'text':
            if not isinstance(v, str):
                return f'{key} must be a string'
        elif kind == 'image':
            if not (isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.shape == OPENPI_IMAGE):
                return f'{key} must be a {OPENPI_IMAGE} uint8 image, got ' \
                       f'{getattr(v, "dtype", type(v).__name__)} {getattr(v, "shape", "")}'
        elif not (isinstance(v, np.ndarray) and v.dtype.kind == 'f' and v.shape == kind
                  and np.all(np.isfinite(v))):
            return f'{key} must be finite floats of shape {kind}'
    return None


class OpenpiTestServer(_Server):
    """An openpi-style policy server for one of openpi's published ``layout``s: the observation
    map checked as its input transforms would (:func:`openpi_layout_problem`; a failure is a
    violation, answered like openpi with a traceback and 1011), ``{actions: H x D,
    policy_timing, server_timing}`` out (D = 7 for libero, 8 for droid by default)."""

    def __init__(self, horizon: int = 10, layout: str = 'libero', action_dim: int | None = None,
                 policy=None, **kw):
        self.layout = layout
        self.horizon = horizon
        self.action_dim = action_dim or OPENPI_ACTION_DIMS[layout]
        self.policy = policy or _zeros(horizon, self.action_dim)
        meta = {'server': 'openpi-test', 'layout': layout, 'action_horizon': horizon,
                'action_dim': self.action_dim}
        super().__init__(meta, **kw)

    def reply(self, request: dict, mode: str, prev_total_ms: float | None) -> dict:
        # openpi's server times policy.infer: the input transforms (this check) and the model;
        # the policy's own policy_timing times the model alone
        t_server = time.perf_counter()
        problem = openpi_layout_problem(self.layout, request)
        if problem:
            self.violations.append(problem)
            raise KeyError(problem)
        if mode == 'error':
            raise RuntimeError('policy failed (test server mode "error")')
        t0 = time.perf_counter()
        acts = np.asarray(self.policy(request), np.float32)
        t1 = time.perf_counter()
        infer_ms = 1e3 * (t1 - t0)
        if mode == 'wrong_shape':
            acts = acts[:, :max(1, self.action_dim - 3)]
        elif mode == 'nan':
            acts = acts.copy()
            acts[0, 0] = np.nan
        server_timing = {'infer_ms': 1e3 * (t1 - t_server)}
        if prev_total_ms is not None:
            server_timing['prev_total_ms'] = prev_total_ms
        return {'actions': acts, 'policy_timing': {'infer_ms': infer_ms},
                'server_timing': server_timing}


def circle_policy(steps: int, dim: int = ACTION_DIM, amplitude: float = 0.3,
                  period: int = 40):
    """A policy that keeps the arm moving: end-effector deltas turning in the horizontal
    plane (``amplitude`` in action units, one turn per ``period`` requests), gripper 0."""
    count = [0]

    def policy(_request):
        k = count[0]
        count[0] += 1
        a = np.zeros((steps, dim), np.float32)
        phase = 2 * np.pi * (k + np.arange(steps)) / period
        a[:, 0], a[:, 1] = amplitude * np.cos(phase), amplitude * np.sin(phase)
        return a
    return policy


def main(argv=None) -> int:
    """Run one test server in the foreground (benchmarks use a separate process, so the
    server does not share the client's interpreter): prints ``PORT <n>`` once listening, then
    reads commands from stdin, one per line: ``mode NAME [DELAY]``, answered ``MODE NAME`` once
    in effect; it ends when stdin closes."""
    import argparse
    import sys
    p = argparse.ArgumentParser(description='neurovla protocol test server')
    p.add_argument('--protocol', choices=('neurovla', 'openpi'), default='neurovla')
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--mode', choices=MODES, default='ok')
    p.add_argument('--layout', choices=tuple(OPENPI_LAYOUTS), default='libero',
                   help='openpi: the observation layout it checks')
    p.add_argument('--policy', choices=('zeros', 'circle'), default='zeros',
                   help='zeros: no motion; circle: deltas turning in the horizontal plane')
    a = p.parse_args(argv)
    neuro = a.protocol == 'neurovla'
    steps = 16 if neuro else 10
    dim = ACTION_DIM if neuro else OPENPI_ACTION_DIMS[a.layout]
    policy = circle_policy(steps, dim) if a.policy == 'circle' else None
    server = (NeuroVLATestServer(chunk=steps, policy=policy, port=a.port, mode=a.mode) if neuro
              else OpenpiTestServer(horizon=steps, layout=a.layout, policy=policy, port=a.port,
                                    mode=a.mode))
    print(f'PORT {server.port}', flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if len(words) >= 2 and words[0] == 'mode' and words[1] in MODES:
                server.mode = words[1]
                server.delay = float(words[2]) if len(words) > 2 else 0.0
                print(f'MODE {server.mode}', flush=True)     # in effect from now on
            elif words:
                print(f'unknown command {line.strip()!r} (mode NAME [DELAY], NAME in {MODES})',
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

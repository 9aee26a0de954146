"""Stop functions and the state watchdog of the spinal layer (ROS-free).

Vocabulary of ISO 10218-1 / IEC 60204-1:

* **emergency stop** (``EMERGENCY``, stop category 1): the ``estop`` topic went true. A
  controlled brake to standstill within the brake's deceleration and jerk limits, then a hold
  at the measured pose. The simulated body has no mechanical brake and its power is not cut
  (the arm would fall): the hold is the position servo of the spinal layer, with no motion
  allowed. Resume needs ``estop`` false *and* an explicit resume request: ``estop`` false
  alone does not resume.
* **protective stop** (``PROTECTIVE``, stop category 2): a stop request (``~/stop``). The same
  controlled brake, power kept, then standstill monitored; an explicit resume ends it.

Both monitor standstill once braked: a joint more than ``standstill_tolerance`` from the held
pose is a violation (reported as an error). A resume is refused while braking and while
``estop`` is asserted; once accepted, the caller re-seeds its reference from the measured state
(no jump on resume: the failure of ros2_control issue 674).

The brake (:class:`BrakeProfile`) takes the measured velocity ``v0`` to zero along a smoothstep
velocity profile, all joints over one duration ``T`` (a straight line in joint space)::

    qd(u) = v0 (1 - 3u^2 + 2u^3),  q(u) = q0 + v0 T (u - u^3 + u^4 / 2),  u = t / T
    T = max(1.5 |v0|max / a, sqrt(6 |v0|max / j))

(peak deceleration 1.5 |v0| / T, peak jerk 6 |v0| / T^2): it stops within |v0| T / 2.

:class:`StateWatchdog`: state older than ``timeout`` trips it (the caller commands its safe
hold); the next fresh sample clears it (the caller engages the reference again by a blend).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RUN, BRAKING, STOPPED = 'run', 'braking', 'stopped'
EMERGENCY, PROTECTIVE = 'emergency', 'protective'
CATEGORY = {EMERGENCY: 1, PROTECTIVE: 2}


@dataclass
class BrakeConfig:
    deceleration: float = 40.0          # peak deceleration of the brake [rad/s^2]
    jerk: float = 2000.0                # peak jerk of the brake [rad/s^3]
    standstill_velocity: float = 0.05   # slower than this on every joint = standstill [rad/s]
    standstill_tolerance: float = 0.05  # farther than this from the held pose: violation [rad]


class BrakeProfile:
    """Controlled stop from (q0, qd0) at t0: see the module docstring."""

    def __init__(self, q0, qd0, t0: float, cfg: BrakeConfig):
        self.q0 = np.array(q0[:6], float)
        self.v0 = np.array(qd0[:6], float)
        self.t0 = t0
        v = float(np.abs(self.v0).max()) if len(self.v0) else 0.0
        self.T = max(1.5 * v / cfg.deceleration, math.sqrt(6.0 * v / cfg.jerk))
        self.q = self.q0.copy()
        self.qd = np.zeros_like(self.v0)

    @property
    def q_end(self) -> np.ndarray:
        return self.q0 + 0.5 * self.T * self.v0

    def sample(self, t: float) -> bool:
        """Set ``q``, ``qd`` for time ``t``; True once the profile is at rest."""
        T = self.T
        u = 1.0 if T <= 0 else min(max((t - self.t0) / T, 0.0), 1.0)
        self.qd[:] = self.v0 * (1.0 - 3.0 * u * u + 2.0 * u ** 3)
        self.q[:] = self.q0 + self.v0 * (T * (u - u ** 3 + 0.5 * u ** 4))
        return u >= 1.0


class StopState:
    """The stop state machine: ``run`` -> ``braking`` -> ``stopped`` -> (resume) ``run``."""

    def __init__(self, cfg: BrakeConfig | None = None):
        self.cfg = cfg or BrakeConfig()
        self.state = RUN
        self.kind: str | None = None       # EMERGENCY or PROTECTIVE while not running
        self.estop = False                 # the estop signal as last received
        self.brake: BrakeProfile | None = None
        self.hold_q: np.ndarray | None = None
        self.t_request: float | None = None     # state time of the stop request [s]
        self.t_standstill: float | None = None  # state time standstill was reached [s]
        self.violation = 0.0               # largest distance from the held pose [rad]
        self.violated = False
        self.changed = False               # set on every state change, cleared by the caller
        self.qd_des = np.zeros(6)

    @property
    def active(self) -> bool:
        return self.state != RUN

    @property
    def category(self) -> int:
        return CATEGORY.get(self.kind, 0)

    @property
    def standstill(self) -> bool:
        return self.t_standstill is not None

    def _set(self, state: str) -> None:
        self.state = state
        self.changed = True

    # ---- requests (they set the state; ``update`` acts on the next state sample) ----
    def set_estop(self, value: bool) -> str:
        """The estop signal: True = emergency stop; False only releases the latch."""
        self.estop = bool(value)
        if self.estop:
            return self.request(EMERGENCY)
        self.changed = True
        return 'estop released: still stopped until a resume request' if self.active else \
            'estop released'

    def request(self, kind: str) -> str:
        """Stop (EMERGENCY or PROTECTIVE); an emergency stop overrides a protective one."""
        if kind not in CATEGORY:
            raise ValueError(f'unknown stop kind {kind!r}')
        if self.active and (self.kind == EMERGENCY or kind == self.kind):
            return f'already in {self.kind} stop ({self.state})'
        if self.active:             # protective -> emergency: same brake, stricter resume
            self.kind = kind
            self.changed = True
            return f'{kind} stop (category {self.category}), was protective'
        self.kind = kind
        self._set(BRAKING)
        self.brake = None
        self.t_request = self.t_standstill = None
        self.violation, self.violated = 0.0, False
        return f'{kind} stop (category {self.category}): braking to standstill'

    def resume(self) -> tuple[bool, str]:
        """Explicit resume: refused while estop is asserted or while still braking."""
        if not self.active:
            return False, 'not stopped'
        if self.estop:
            return False, 'estop is asserted: release it (estop false) first'
        if self.state != STOPPED:
            return False, 'still braking: resume after standstill'
        self.kind = None
        self.brake = self.hold_q = None
        self._set(RUN)
        return True, 'resumed: the reference is re-seeded from the measured state'

    # ---- per state sample ----
    def restart(self) -> None:
        """Brake again from the next sample (the state was lost in between)."""
        if self.state == BRAKING:
            self.brake = None

    def update(self, q, qd, t: float):
        """One state sample while stopped: (q_des, qd_des) to command, or None when running."""
        if self.state == RUN:
            return None
        cfg = self.cfg
        if self.state == BRAKING:
            if self.brake is None:
                self.brake = BrakeProfile(q, qd, t, cfg)
                if self.t_request is None:
                    self.t_request = t
            if self.brake.sample(t):
                self.hold_q = np.array(q[:6], float)    # hold where the arm came to rest
                self._set(STOPPED)
            else:
                return self.brake.q, self.brake.qd
        v = np.abs(qd[:6]).max()
        if self.t_standstill is None and v < cfg.standstill_velocity:
            self.t_standstill = t
            self.hold_q = np.array(q[:6], float)
            self.changed = True
        d = float(np.abs(np.asarray(q[:6]) - self.hold_q).max())
        if d > self.violation:
            self.violation = d
            if d > cfg.standstill_tolerance and not self.violated:
                self.violated = True
                self.changed = True
        return self.hold_q, self.qd_des

    def status(self) -> dict:
        """Key values for diagnostics."""
        d = {'stop': self.state, 'stop_kind': self.kind or 'none',
             'stop_category': self.category, 'estop': self.estop,
             'standstill': self.standstill,
             'standstill_violation_rad': self.violation}
        if self.t_request is not None and self.t_standstill is not None:
            d['stop_to_standstill_s'] = self.t_standstill - self.t_request
        if self.brake is not None:
            d['brake_time_s'] = self.brake.T
        return d


GAP_BINS_MS = (2, 5, 10, 20, 50, 100)


class StateWatchdog:
    """Trips when no fresh state arrived for longer than ``timeout`` [s] (monotonic clock)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.t_last: float | None = None
        self.tripped = False
        self.trips = 0
        self.gap_max = 0.0          # the longest time between two samples so far [s]
        self.gaps_over = dict.fromkeys(GAP_BINS_MS, 0)   # samples later than each bin [ms]

    def feed(self, now: float) -> bool:
        """A fresh sample at ``now``; True when it clears a trip (the caller re-engages)."""
        if self.t_last is not None:
            gap = now - self.t_last
            if gap > self.gap_max:
                self.gap_max = gap
            if gap > 0.002:
                for ms in GAP_BINS_MS:
                    if gap > ms * 1e-3:
                        self.gaps_over[ms] += 1
        self.t_last = now
        if self.tripped:
            self.tripped = False
            return True
        return False

    def check(self, now: float) -> bool:
        """True when the state just went stale (the caller commands its safe hold)."""
        if self.tripped or self.t_last is None or now - self.t_last <= self.timeout:
            return False
        self.tripped = True
        self.trips += 1
        return True

    def status(self) -> dict:
        d = {'watchdog_tripped': self.tripped, 'watchdog_trips': self.trips,
             'state_gap_max_ms': self.gap_max * 1e3}
        d.update({f'state_gaps_over_{ms}ms': n for ms, n in self.gaps_over.items()})
        return d

    def age(self, now: float) -> float:
        return math.inf if self.t_last is None else now - self.t_last

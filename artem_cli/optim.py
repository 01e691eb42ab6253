"""Optimizers: L-BFGS (two-loop recursion, strong-Wolfe line search) and Adam.

Both are written once against the array module of ``x0``, so they run unchanged on NumPy and CuPy.
``fun(x)`` returns ``(value, gradient)``. ``run(max_iterations)`` is a generator that yields
``(x, value)`` after every iteration, so the caller owns progress bars, snapshots and Ctrl-C; when it
ends by itself, ``stop_reason`` says why. A NaN or infinite loss or gradient raises ``ArtemError``.
"""
import math

import numpy as np

from .backend import array_module
from .errors import ArtemError


def _dot(a, b):
    return float(array_module(a).vdot(a, b))


def _lazy_dot(a, b):
    """a·b for arithmetic that needs no answer yet: a float on NumPy, a 0-d array on CuPy, where
    ``float`` would wait for the GPU (the two-loop recursion would wait 2 x history times an
    iteration)."""
    xp = array_module(a)
    return float(xp.vdot(a, b)) if xp is np else xp.vdot(a, b)


def _check_finite(value, grad):
    xp = array_module(grad)
    if not math.isfinite(value) or not bool(xp.isfinite(grad).all()):
        raise ArtemError("the loss or its gradient became NaN or infinite; try smaller weights or learning rate")


def _cubic_minimum(t1, f1, g1, t2, f2, g2, lo, hi):
    """Minimizer of the cubic through two points with slopes, clamped to [lo, hi]; bisection if none."""
    if not (math.isfinite(f1) and math.isfinite(f2)) or t1 == t2:
        return (lo + hi) / 2
    d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2
    d2 = math.copysign(math.sqrt(d2_square), t2 - t1)
    denominator = g2 - g1 + 2 * d2
    if denominator == 0:
        return (lo + hi) / 2
    t = t2 - (t2 - t1) * (g2 + d2 - d1) / denominator
    return min(max(t, lo), hi)


def strong_wolfe(fun, x, value, grad, direction, step, c1=1e-4, c2=0.9, max_evaluations=25):
    """Line search along ``direction`` for a step meeting the strong Wolfe conditions.

    Returns ``(step, x_new, value_new, grad_new, evaluations)``; the returned point always satisfies
    the sufficient-decrease (Armijo) condition, or ``step`` is None when no such point was found.
    Non-finite trial values count as "too far" and shrink the step.
    """
    slope0 = _dot(grad, direction)
    evaluations = 0
    best = None  # lowest Armijo-satisfying point seen

    def evaluate(t):
        nonlocal evaluations, best
        evaluations += 1
        x_t = x + t * direction
        f_t, g_t = fun(x_t)
        finite = math.isfinite(f_t)
        slope = _dot(g_t, direction) if finite else math.nan
        if finite and f_t <= value + c1 * t * slope0 and (best is None or f_t < best[2]):
            best = (t, x_t, f_t, g_t)
        return x_t, (f_t if finite else math.inf), g_t, slope

    def armijo_fails(t, f_t):
        return f_t > value + c1 * t * slope0

    def curvature_holds(slope):
        return abs(slope) <= -c2 * slope0

    def zoom(lo, f_lo, s_lo, hi, f_hi, s_hi):
        while evaluations < max_evaluations:
            a, b = min(lo, hi), max(lo, hi)
            t = _cubic_minimum(lo, f_lo, s_lo, hi, f_hi, s_hi, a, b)
            if min(t - a, b - t) < 0.1 * (b - a):  # too close to an end: bisect instead
                t = (a + b) / 2
            x_t, f_t, g_t, s_t = evaluate(t)
            if armijo_fails(t, f_t) or f_t >= f_lo:
                hi, f_hi, s_hi = t, f_t, s_t
            else:
                if curvature_holds(s_t):
                    return t, x_t, f_t, g_t
                if s_t * (hi - lo) >= 0:
                    hi, f_hi, s_hi = lo, f_lo, s_lo
                lo, f_lo, s_lo = t, f_t, s_t
            if abs(hi - lo) * max(1.0, abs(s_lo)) < 1e-12:
                break
        return None

    t_prev, f_prev, s_prev = 0.0, value, slope0
    t = step
    found = None
    while evaluations < max_evaluations:
        x_t, f_t, g_t, s_t = evaluate(t)
        if armijo_fails(t, f_t) or (evaluations > 1 and f_t >= f_prev):
            found = zoom(t_prev, f_prev, s_prev, t, f_t, s_t)
            break
        if curvature_holds(s_t):
            found = (t, x_t, f_t, g_t)
            break
        if s_t >= 0:
            found = zoom(t, f_t, s_t, t_prev, f_prev, s_prev)
            break
        t_next = _cubic_minimum(t_prev, f_prev, s_prev, t, f_t, s_t, t + 0.01 * (t - t_prev), 10 * t)
        t_prev, f_prev, s_prev, t = t, f_t, s_t, t_next
    if found is None:
        found = best
    if found is None:
        return None, x, value, grad, evaluations
    return (*found, evaluations)


class LBFGS:
    """Limited-memory BFGS with ``history`` correction pairs (100, as in jcjohnson/neural-style).

    Stops when the gradient's largest entry falls below ``gradient_tolerance``, when the loss changes by
    less than ``change_tolerance`` (relative) in an iteration, or when the line search finds no decrease.
    """

    def __init__(self, fun, x0, history=100, gradient_tolerance=1e-7, change_tolerance=1e-9):
        if history < 1:
            raise ArtemError("L-BFGS history must be at least 1")
        self.fun, self.x = fun, x0
        self.history = history
        self.gradient_tolerance, self.change_tolerance = gradient_tolerance, change_tolerance
        self.evaluations = 0
        self.stop_reason = None

    def _direction(self, grad, pairs):
        q = -grad
        alphas = []
        for s, y, rho in reversed(pairs):
            alpha = rho * _lazy_dot(s, q)
            q = q - alpha * y
            alphas.append(alpha)
        if pairs:
            s, y, _ = pairs[-1]
            q = q * (_lazy_dot(s, y) / _lazy_dot(y, y))
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
            beta = rho * _lazy_dot(y, q)
            q = q + (alpha - beta) * s
        return q

    def run(self, max_iterations):
        xp = array_module(self.x)
        x = self.x
        value, grad = self.fun(x)
        self.evaluations += 1
        _check_finite(value, grad)
        pairs = []
        for _ in range(max_iterations):
            if float(xp.abs(grad).max()) <= self.gradient_tolerance:
                self.stop_reason = "the gradient vanished"
                return
            direction = self._direction(grad, pairs)
            if _dot(grad, direction) >= 0:  # not a descent direction: forget the curvature history
                pairs.clear()
                direction = -grad
            step = 1.0 if pairs else min(1.0, 1.0 / float(xp.abs(grad).sum()))
            step, x_new, value_new, grad_new, evaluations = strong_wolfe(self.fun, x, value, grad, direction, step)
            self.evaluations += evaluations
            if step is None:
                self.stop_reason = "the line search found no further decrease"
                return
            _check_finite(value_new, grad_new)
            s, y = x_new - x, grad_new - grad
            ys = _dot(y, s)
            if ys > 1e-10 * _dot(y, y):
                pairs.append((s, y, 1.0 / ys))
                if len(pairs) > self.history:
                    pairs.pop(0)
            change = abs(value - value_new)
            x, value, grad = x_new, value_new, grad_new
            self.x = x
            yield x, value
            if change <= self.change_tolerance * max(abs(value), 1e-30):
                self.stop_reason = "the loss stopped changing"
                return
        self.stop_reason = "the iteration limit was reached"


class Adam:
    """Adam (Kingma & Ba) with learning rate ``lr`` in the units of x (here 0..255 pixel levels), or
    ``lr(k)``, a function of the step number k = 1, 2, ... (a schedule, for training).

    Each yielded value is the loss at the point the step was taken from (Adam needs no other).
    ``state()`` is what a later ``Adam(..., state=...)`` needs to go on exactly where this one is."""

    def __init__(self, fun, x0, lr, beta1=0.9, beta2=0.999, eps=1e-8, state=None):
        if not callable(lr) and not lr > 0:
            raise ArtemError(f"the learning rate must be positive, not {lr}")
        self.fun, self.x = fun, x0
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        xp = array_module(x0)
        self.m, self.v, self.steps = state if state is not None else (xp.zeros_like(x0), xp.zeros_like(x0), 0)
        self.evaluations = 0
        self.stop_reason = None

    def state(self):
        return self.m, self.v, self.steps

    def run(self, max_iterations):
        xp = array_module(self.x)
        x = self.x
        for _ in range(max_iterations):
            k = self.steps + 1
            value, grad = self.fun(x)
            self.evaluations += 1
            _check_finite(value, grad)
            self.m = self.beta1 * self.m + (1 - self.beta1) * grad
            self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
            m_hat = self.m / (1 - self.beta1**k)
            v_hat = self.v / (1 - self.beta2**k)
            lr = self.lr(k) if callable(self.lr) else self.lr
            x = x - lr * m_hat / (xp.sqrt(v_hat) + self.eps)
            self.x, self.steps = x, k
            yield x, value
        self.stop_reason = "the iteration limit was reached"

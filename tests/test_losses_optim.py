"""Loss gradients against finite differences; L-BFGS and Adam on functions with known minima."""
import math

import numpy as np
import pytest

from artem_cli.backend import read
from artem_cli.errors import ArtemError
from artem_cli.losses import content_loss, gram, style_loss, tv_loss
from artem_cli.optim import LBFGS, Adam, CurvatureHistory, plain


def check_gradient(fun, x, rng, eps=1e-6):
    value, grad = fun(x)
    for _ in range(5):
        d = rng.standard_normal(x.shape)
        numeric = (fun(x + eps * d)[0] - fun(x - eps * d)[0]) / (2 * eps)
        assert numeric == pytest.approx(float(np.vdot(grad, d)), rel=1e-6, abs=1e-9)


def test_content_loss_gradient():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((4, 5, 6))
    check_gradient(lambda f: content_loss(f, target), rng.standard_normal((4, 5, 6)), rng)
    assert content_loss(target, target)[0] == 0


def test_style_loss_gradient_and_gram():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((4, 5, 6))
    g = gram(f)
    np.testing.assert_allclose(g, np.einsum("ahw,bhw->ab", f, f) / f.size)
    target = gram(rng.standard_normal((4, 7, 3)))
    check_gradient(lambda x: style_loss(x, target), f, rng)
    assert style_loss(f, g)[0] == pytest.approx(0, abs=1e-20)


def test_tv_loss_gradient_and_value():
    rng = np.random.default_rng(2)
    check_gradient(tv_loss, rng.standard_normal((3, 6, 7)), rng)
    assert tv_loss(np.ones((3, 4, 4)))[0] == 0
    ramp = np.broadcast_to(np.arange(4.0), (1, 4, 4))  # 12 horizontal steps of 1
    assert tv_loss(ramp)[0] == pytest.approx(12 / 16)


def test_a_weight_scales_each_loss_and_its_gradient():
    """The weight the objective gives each term is folded into the term's own scalar factors (one pass
    over the gradient on a GPU, not two): the same as weighting afterwards, and still the gradient."""
    rng = np.random.default_rng(4)
    f, target = rng.standard_normal((4, 5, 6)), rng.standard_normal((4, 5, 6))
    a = gram(rng.standard_normal((4, 3, 3)))
    for loss in (lambda x, w=1.0: content_loss(x, target, w), lambda x, w=1.0: style_loss(x, a, w), tv_loss):
        value, grad = loss(f)
        weighted, weighted_grad = loss(f, 2.5)
        assert weighted == pytest.approx(2.5 * value, rel=1e-12)
        np.testing.assert_allclose(weighted_grad, 2.5 * grad, rtol=1e-12)
        check_gradient(lambda x: loss(x, 2.5), f, rng)


def test_losses_do_not_grow_with_image_size():
    """Same content at twice the resolution gives about the same style and content values."""
    rng = np.random.default_rng(3)
    small = rng.random((8, 16, 16))
    big = small.repeat(2, axis=1).repeat(2, axis=2)
    a = gram(rng.random((8, 5, 5)))
    assert style_loss(big, a)[0] == pytest.approx(style_loss(small, a)[0], rel=1e-12)
    assert content_loss(big, big * 0)[0] == pytest.approx(content_loss(small, small * 0)[0], rel=1e-12)


def quadratic(x):
    scales = np.arange(1.0, x.size + 1).reshape(x.shape)
    r = x - 3.0
    return float((scales * r * r).sum()), 2 * scales * r


def rosenbrock(x):
    a, b = x[0], x[1]
    value = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return float(value), grad


def run(optimizer, n):
    x = None
    for x, _ in optimizer.run(n):
        pass
    return x


def test_lbfgs_minimizes_quadratic_and_rosenbrock():
    opt = LBFGS(plain(quadratic), np.zeros((2, 5)))
    np.testing.assert_allclose(run(opt, 100), 3.0, atol=1e-6)
    assert opt.stop_reason in ("the gradient vanished", "the loss stopped changing")
    opt = LBFGS(plain(rosenbrock), np.array([-1.2, 1.0]))
    np.testing.assert_allclose(run(opt, 200), [1.0, 1.0], atol=1e-5)


def _two_loop(grad, pairs):
    """The textbook recursion (Nocedal & Wright, Algorithm 7.4), vector by vector: CurvatureHistory's twin."""
    q, alphas = -grad, []
    for s, y in reversed(pairs):
        alpha = (s @ q) / (y @ s)
        q = q - alpha * y
        alphas.append(alpha)
    s, y = pairs[-1]
    r = q * ((s @ y) / (y @ y))
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        r = r + (alpha - (y @ r) / (y @ s)) * s
    return r


@pytest.mark.parametrize("dtype,tolerance", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_curvature_history_gives_the_two_loop_direction(dtype, tolerance):
    """Fewer pairs than slots, then more (the oldest forgotten, slots reused out of order), a pair of
    negative curvature offered and dropped, then none after ``clear``; on an image-shaped gradient.
    The slope returned is the gradient's product with the direction."""
    rng = np.random.default_rng(7)
    shape, size = (3, 4, 5), 5
    history = CurvatureHistory(np.zeros(shape, dtype), size)
    pairs = []
    for count in range(1, 10):
        s = rng.standard_normal(shape)
        y = s * rng.uniform(0.5, 2.0, shape) + 0.1 * rng.standard_normal(shape)  # y·s > 0, as L-BFGS keeps
        if count == 7:
            y = -y  # y·s < 0: not kept
        else:
            pairs.append((s.astype(dtype).astype(np.float64).ravel(), y.astype(dtype).astype(np.float64).ravel()))
        history.add(s.astype(dtype), y.astype(dtype))
        grad = rng.standard_normal(shape).astype(dtype)
        direction, slope = history.direction(grad, float(np.vdot(grad, grad)))
        assert direction.shape == shape and direction.dtype == dtype and len(history) == min(len(pairs), size)
        expected = _two_loop(grad.astype(np.float64).ravel(), pairs[-size:])
        assert np.linalg.norm(direction.ravel() - expected) < tolerance * np.linalg.norm(expected)
        assert slope == pytest.approx(grad.astype(np.float64).ravel() @ expected, rel=tolerance)
    again, slope_again = history.direction(grad, float(np.vdot(grad, grad)))  # no pair offered since: the same
    assert np.array_equal(again, direction) and slope_again == slope
    history.clear()
    direction, slope = history.direction(grad, 2.5)
    assert len(history) == 0 and np.array_equal(direction, -grad) and slope == -2.5


class OnDevice(np.ndarray):
    """A NumPy array standing in for a GPU's: everything computed from it stays an ``OnDevice``
    (0-d results too), and reading one on the host other than by ``to_host`` (its ``get``, counted)
    fails, as each read is a wait for a GPU."""

    reads = 0

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return np.asarray(array).view(OnDevice)

    def __array_function__(self, func, types, args, kwargs):
        result = super().__array_function__(func, types, args, kwargs)
        return np.asarray(result).view(OnDevice) if isinstance(result, (np.ndarray, np.generic)) else result

    def get(self):
        OnDevice.reads += 1
        return self.view(np.ndarray).copy()

    def _hidden_read(self, *args):
        raise AssertionError("an array on the device read without to_host")

    __float__ = __int__ = __bool__ = item = tolist = _hidden_read


def _on_device(f):
    """``f`` (on host arrays) as an objective on ``OnDevice`` ones, its value read with the probes."""

    def fun(x, probes):
        value, grad = f(x.view(np.ndarray))
        grad = grad.view(OnDevice)
        values = read([np.asarray(value).view(OnDevice), *probes(grad)])
        return values[0], grad, values[1:]

    return fun


@pytest.mark.parametrize("f,x0", [(quadratic, np.zeros((3, 4, 5))), (rosenbrock, np.array([-1.2, 1.0]))])
def test_optimizers_read_the_device_once_per_evaluation_and_lbfgs_once_more_per_iteration(f, x0):
    """The value with what the optimizer needs of the gradient in one read, and L-BFGS's pair and
    gradient products in one more (none in the first iteration, which has no pair yet)."""
    OnDevice.reads = 0
    lbfgs = LBFGS(_on_device(f), x0.view(OnDevice), history=3)
    iterations = sum(1 for _ in lbfgs.run(40))
    assert iterations > 5 and lbfgs.evaluations > iterations  # line searches of several trials, too
    assert OnDevice.reads == lbfgs.evaluations + iterations - 1
    assert f(lbfgs.x.view(np.ndarray))[0] < 1e-3 * f(x0)[0]
    OnDevice.reads = 0
    adam = Adam(_on_device(f), x0.view(OnDevice), lr=0.01)
    assert sum(1 for _ in adam.run(20)) == 20 and OnDevice.reads == adam.evaluations == 20


def test_lbfgs_never_increases_the_loss():
    values = [v for _, v in LBFGS(plain(rosenbrock), np.array([-1.2, 1.0]), history=3).run(100)]
    assert all(b <= a for a, b in zip(values, values[1:]))


def test_adam_minimizes_quadratic_and_rosenbrock():
    np.testing.assert_allclose(run(Adam(plain(quadratic), np.zeros(4), lr=0.1), 2000), 3.0, atol=1e-3)
    np.testing.assert_allclose(run(Adam(plain(rosenbrock), np.array([-1.2, 1.0]), lr=0.02), 20000), [1.0, 1.0], atol=1e-2)


def test_adam_after_step_gives_the_loss_of_the_point_reached_on_the_same_path():
    """By default each value is the loss where the step was taken from (a training's batch loss);
    ``after_step`` gives the loss of the point each step reached, the same points, for one evaluation
    more in all."""
    x0 = np.array([-1.2, 1.0])
    before = list(Adam(plain(rosenbrock), x0, lr=0.01).run(10))
    after = Adam(plain(rosenbrock), x0, lr=0.01, after_step=True)
    reached = list(after.run(10))
    assert [x.tolist() for x, _ in reached] == [x.tolist() for x, _ in before]
    assert [value for _, value in reached] == [rosenbrock(x)[0] for x, _ in reached]
    assert [value for _, value in before] == [rosenbrock(x)[0] for x in [x0] + [x for x, _ in before[:-1]]]
    assert after.evaluations == 11 and after.steps == 10


def test_non_finite_loss_is_a_clear_error():
    def bad(x):
        return float("nan"), x

    with pytest.raises(ArtemError, match="NaN"):
        run(LBFGS(plain(bad), np.ones(3)), 5)
    with pytest.raises(ArtemError, match="NaN"):
        run(Adam(plain(bad), np.ones(3), lr=1.0), 5)

    def broken_gradient(x):  # a finite loss whose gradient turns NaN past x = 1: an error, not "too far"
        return float((x[0] - 3) ** 2), np.array([np.nan if x[0] > 1 else 2 * (x[0] - 3)])

    with pytest.raises(ArtemError, match="NaN"):
        run(LBFGS(plain(broken_gradient), np.array([0.0]), stall_steps=(8,)), 5)
    with pytest.raises(ArtemError, match="learning rate"):
        Adam(plain(quadratic), np.ones(3), lr=-1)


def test_lbfgs_line_search_backs_off_from_infinite_values():
    def cliff(x):  # infinite beyond x > 1; minimum at 0.9
        if x[0] > 1:
            return float("inf"), np.array([np.inf])
        return float((x[0] - 0.9) ** 2), np.array([2 * (x[0] - 0.9)])

    np.testing.assert_allclose(run(LBFGS(plain(cliff), np.array([-50.0])), 50), [0.9], atol=1e-6)


def test_within_range_scores_the_clipped_image_and_pulls_outside_pixels_back():
    from artem_cli.losses import within_range

    rng = np.random.default_rng(4)
    target = rng.random((3, 4, 5))
    x = rng.random((3, 4, 5)) * 1.6 - 0.3  # some pixels below 0 and above 1

    def loss(y):
        return content_loss(y, target)

    value, grad = within_range(loss, x.copy(), 0.0, 1.0)
    clipped = np.clip(x, 0, 1)
    outside = x - clipped
    assert value == pytest.approx(content_loss(clipped, target)[0] + 1e4 * (outside**2).sum() / x.size)
    check_gradient(lambda y: within_range(loss, y.copy(), 0.0, 1.0), x, rng, eps=1e-7)
    assert np.all(grad[outside > 0] > 0) and np.all(grad[outside < 0] < 0)  # descent moves them back in


def test_lbfgs_steps_past_a_stalled_line_search_with_the_stall_steps():
    """A loss that resolves only changes of about 1000 (a staircase; its gradient the smooth one's):
    the first line search's steps (1 / |grad|_1) change the smooth loss by about 100, so it finds no
    decrease (or one in the loss's last bit) and plain L-BFGS stops where it started; with
    ``stall_steps`` a steepest-descent step moving the largest entry by 8 gets past the stairs, and
    L-BFGS then reaches the minimum."""
    target = np.full(1000, 100.0)

    def stairs(x):
        smooth = 0.5 * float((x - target) @ (x - target))
        return math.floor(smooth / 1000 + 0.5) * 1000.0, x - target  # the start mid-stair

    start = np.zeros(1000)
    stuck = LBFGS(plain(stairs), start)
    stalled = [(x.copy(), v) for x, v in stuck.run(50)]
    assert stuck.stop_reason in ("the loss stopped changing", "the line search found no further decrease")
    assert len(stalled) <= 1 and all(v == stairs(start)[0] and np.abs(x).max() < 1e-6 for x, v in stalled)
    rescued = LBFGS(plain(stairs), start, stall_steps=(8, 4, 2, 1))
    points = [(x.copy(), v) for x, v in rescued.run(50)]
    assert np.abs(points[0][0] - start).max() == pytest.approx(8)  # the first stall step
    values = [stairs(start)[0]] + [v for _, v in points]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert values[-1] == 0.0 and np.abs(rescued.x - target).max() < 2


def test_lbfgs_takes_the_stall_steps_only_once_in_a_row():
    """A slope that resolves only changes of 50 (a linear loss, quantized): every line search stalls
    and a stall step always helps. L-BFGS takes one, then stops at the next stall instead of crawling
    on from stall step to stall step (each after a failed line search: 26 evaluations an iteration)."""

    def slope(x):
        return 50.0 * math.floor(-float(x.sum()) / 50 + 0.5), -np.ones_like(x)

    opt = LBFGS(plain(slope), np.zeros(10), stall_steps=(8,))
    points = [(x.copy(), v) for x, v in opt.run(100)]
    assert np.allclose(points[0][0], 8) and points[0][1] == -100  # the stall step
    assert len(points) <= 2 and all(np.allclose(x, 8, atol=1e-6) and v == -100 for x, v in points[1:])
    assert opt.stop_reason in ("the loss stopped changing", "the line search found no further decrease")
    assert opt.evaluations <= 1 + 2 * 25 + 1


def test_style_blend_shares_sum_to_one_whatever_the_weights_scale():
    """Weights that overflow when summed (1e308 twice) blend as 1,1 do; tiny ones too."""
    from artem_cli.api import Settings

    for weights in ((1e308, 1e308), (1.0, 1.0), (5e-324, 5e-324)):
        assert Settings(style_blend=weights).blend(2) == [0.5, 0.5]
    assert Settings(style_blend=(1e308, 0.0, 3e307)).blend(3) == pytest.approx([1 / 1.3, 0.0, 0.3 / 1.3])
    assert Settings().blend(4) == [0.25] * 4

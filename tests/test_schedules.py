"""Tests of jaxlr's schedules: optax / torch / Keras references, traceability, eager validation."""

import bisect
import doctest
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlr
from jaxlr._optim import schedules as _schedules

# Schedules are pure float32 maths: strict dtype promotion (tests/conftest.py) catches a
# bool/int/float64 mix-up in them. optax's own schedules are not strict-clean, so the tests that
# call optax do not use it.
STRICT = pytest.mark.usefixtures("strict_promotion")

PUBLIC = ["constant", "linear", "polynomial_decay", "exponential_decay", "cosine_decay",
          "warmup_cosine_decay", "join", "step_decay", "multistep_decay", "one_cycle", "cyclic",
          "inverse_time_decay", "cosine_restarts", "warmup", "warmup_stable_decay", "tabulated"]
STEPS = np.arange(0, 161)  # every case below ends well before 160: covers "far past the end"
TOL = dict(rtol=1e-6, atol=1e-7)  # float32 vs optax's float32
TOL64 = dict(rtol=1e-5, atol=1e-7)  # float32 vs a float64 formula


def curve(schedule, steps=STEPS):
    return np.asarray(schedule(jnp.asarray(steps)))


def test_public_names():
    defined = {n for n, f in vars(_schedules).items() if inspect.isfunction(f)
               and f.__module__ == _schedules.__name__ and not n.startswith("_")}
    assert defined == set(PUBLIC)
    for name in PUBLIC:
        assert getattr(jaxlr, name) is getattr(_schedules, name)


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_house_style(name):
    doc = inspect.getdoc(getattr(jaxlr, name))
    for section in ("Args:", "Returns:", "Example:", ">>> import jaxlr", "References:", "https://"):
        assert section in doc, (name, section)
    params = inspect.signature(getattr(jaxlr, name)).parameters
    assert all(f"  {p}:" in doc for p in params), name


def test_docstring_examples():
    result = doctest.testmod(_schedules, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= len(PUBLIC) and result.failed == 0


# ---------------------------------------------------------------- a. optax at concrete values
OPTAX_CASES = [
    ("constant", "constant_schedule", dict(value=0.3)),
    ("linear", "linear_schedule", dict(init_value=1.0, end_value=0.01, transition_steps=50)),
    ("linear", "linear_schedule",
     dict(init_value=0.0, end_value=3e-4, transition_steps=17, transition_begin=9)),
    ("linear", "linear_schedule", dict(init_value=0.2, end_value=0.5, transition_steps=1)),
    ("polynomial_decay", "polynomial_schedule",
     dict(init_value=1.0, end_value=0.0, power=2.0, transition_steps=40, transition_begin=10)),
    ("polynomial_decay", "polynomial_schedule",
     dict(init_value=1e-3, end_value=1e-5, power=0.5, transition_steps=100)),
    ("exponential_decay", "exponential_decay",
     dict(init_value=1.0, transition_steps=10, decay_rate=0.5)),
    ("exponential_decay", "exponential_decay",
     dict(init_value=0.1, transition_steps=7, decay_rate=0.9, transition_begin=5, staircase=True)),
    ("exponential_decay", "exponential_decay",
     dict(init_value=1.0, transition_steps=10, decay_rate=0.5, end_value=0.1)),
    ("exponential_decay", "exponential_decay",
     dict(init_value=0.01, transition_steps=20, decay_rate=2.0, transition_begin=3,
          staircase=True, end_value=0.05)),
    ("cosine_decay", "cosine_decay_schedule", dict(init_value=1.0, decay_steps=100)),
    ("cosine_decay", "cosine_decay_schedule",
     dict(init_value=0.5, decay_steps=33, alpha=0.1, exponent=2.0)),
    ("warmup_cosine_decay", "warmup_cosine_decay_schedule",
     dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=100)),
    ("warmup_cosine_decay", "warmup_cosine_decay_schedule",
     dict(init_value=1e-4, peak_value=3e-3, warmup_steps=25, decay_steps=80, end_value=1e-4,
          exponent=0.5)),
    ("warmup_cosine_decay", "warmup_cosine_decay_schedule",
     dict(init_value=0.1, peak_value=0.0, warmup_steps=5, decay_steps=20, end_value=0.05)),
    ("warmup_cosine_decay", "warmup_cosine_decay_schedule",
     dict(init_value=0.3, peak_value=1.0, warmup_steps=0, decay_steps=20)),
]


@pytest.mark.parametrize("ours, theirs, kwargs", OPTAX_CASES)
def test_matches_optax(ours, theirs, kwargs):
    expected = np.asarray(getattr(optax, theirs)(**kwargs)(jnp.asarray(STEPS)))
    expected = np.broadcast_to(expected, STEPS.shape)
    np.testing.assert_allclose(curve(getattr(jaxlr, ours)(**kwargs)), expected, **TOL)


@pytest.mark.parametrize("boundaries", [[10, 50], [0, 1], [30, 31]])
def test_join_matches_optax(boundaries):
    ours = jaxlr.join([jaxlr.linear(0.0, 1.0, 10), jaxlr.cosine_decay(1.0, 40, alpha=0.1),
                       jaxlr.constant(0.05)], boundaries)
    theirs = optax.join_schedules([optax.linear_schedule(0.0, 1.0, 10),
                                   optax.cosine_decay_schedule(1.0, 40, alpha=0.1),
                                   optax.constant_schedule(0.05)], boundaries)
    np.testing.assert_allclose(curve(ours), np.asarray(theirs(jnp.asarray(STEPS))), **TOL)


# ------------------------------------------------------ a. torch / Keras / paper formulas, float64
def one_cycle_ref(step, total_steps, max_lr, pct_start=0.3, anneal_strategy="cos",
                  div_factor=25.0, final_div_factor=1e4, three_phase=False):
    # torch OneCycleLR.__init__ / get_lr,
    # https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html
    initial = max_lr / div_factor
    low = initial / final_div_factor
    if three_phase:
        phases = [(pct_start * total_steps - 1, initial, max_lr),
                  (2 * pct_start * total_steps - 2, max_lr, initial),
                  (total_steps - 1, initial, low)]
    else:
        phases = [(pct_start * total_steps - 1, initial, max_lr), (total_steps - 1, max_lr, low)]
    step = min(step, total_steps - 1)  # jaxlr holds the last value where torch raises
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start)
            if anneal_strategy == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
            return (b - a) * pct + a
        start = end


def cyclic_ref(step, base_lr, max_lr, step_size_up=2000, step_size_down=None,
               mode="triangular", gamma=1.0):
    # torch CyclicLR.get_lr, https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html
    down = step_size_up if step_size_down is None else step_size_down
    total = step_size_up + down
    ratio = step_size_up / total
    cycle = math.floor(1 + step / total)
    x = 1.0 + step / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    fn = {"triangular": 1.0, "triangular2": 1 / (2.0 ** (cycle - 1)), "exp_range": gamma**step}
    return base_lr + (max_lr - base_lr) * scale * fn[mode]


def step_ref(step, init_value, step_size, factor=0.1):
    # torch StepLR, https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html
    return init_value * factor ** (step // step_size)


def multistep_ref(step, init_value, milestones, factor=0.1):
    # torch MultiStepLR._get_closed_form_lr (bisect_right over the sorted milestones, so a
    # milestone given twice counts twice),
    # https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html
    return init_value * factor ** bisect.bisect_right(sorted(milestones), step)


def inverse_time_ref(step, init_value, decay_steps, decay_rate, staircase=False):
    # Keras InverseTimeDecay, https://keras.io/api/optimizers/learning_rate_schedules/inverse_time_decay/
    p = step / decay_steps
    return init_value / (1 + decay_rate * (math.floor(p) if staircase else p))


def restarts_ref(step, init_value, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # Keras CosineDecayRestarts, https://keras.io/api/optimizers/learning_rate_schedules/cosine_decay_restarts/
    # period i lasts first_decay_steps * t_mul**i; Keras finds i by a log formula, here by summing
    if t_mul < 1 and step >= first_decay_steps / (1 - t_mul):
        return init_value * alpha  # jaxlr's value past the (finite) end of all periods
    i, start, length = 0, 0.0, float(first_decay_steps)
    while step >= start + length:
        start, length, i = start + length, length * t_mul, i + 1
    frac = (step - start) / length
    return init_value * ((1 - alpha) * 0.5 * m_mul**i * (1 + math.cos(math.pi * frac)) + alpha)


def wsd_ref(step, peak_value, total_steps, warmup_steps, decay_steps, init_value=0.0,
            end_value=0.0, decay_shape="linear"):
    # Hägele et al. 2024 https://arxiv.org/abs/2405.18392 (linear, cosine, 1-sqrt cooldowns);
    # Hu et al. 2024 (MiniCPM) https://arxiv.org/abs/2404.06395
    if step < warmup_steps:
        return init_value + (peak_value - init_value) * step / warmup_steps
    start = total_steps - decay_steps
    if step < start:
        return peak_value
    p = min((step - start) / decay_steps, 1.0) if decay_steps > 0 else 1.0
    w = {"linear": 1 - p, "cosine": 0.5 * (1 + math.cos(math.pi * p)), "1-sqrt": 1 - math.sqrt(p)}
    return end_value + (peak_value - end_value) * w[decay_shape]


def warmup_cosine_ref(step, warmup_steps, init_value, peak, decay_steps):
    # linear warm-up to schedule(0), then schedule(step - warmup_steps) (e.g. Goyal et al. 2017,
    # https://arxiv.org/abs/1706.02677); schedule = cosine decay (optax's formula)
    if step < warmup_steps:
        return init_value + (peak - init_value) * step / warmup_steps
    t = min(step - warmup_steps, decay_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * t / decay_steps))


FORMULA_CASES = [
    ("one_cycle", one_cycle_ref, dict(total_steps=100, max_lr=1.0)),
    ("one_cycle", one_cycle_ref, dict(total_steps=100, max_lr=0.1, anneal_strategy="linear")),
    ("one_cycle", one_cycle_ref, dict(total_steps=37, max_lr=2.0, pct_start=0.25,
                                      div_factor=10.0, final_div_factor=100.0, three_phase=True)),
    ("one_cycle", one_cycle_ref, dict(total_steps=50, max_lr=1.0, pct_start=0.4,
                                      anneal_strategy="linear", three_phase=True)),
    ("one_cycle", one_cycle_ref, dict(total_steps=10, max_lr=1.0, pct_start=0.6, three_phase=True)),
    ("one_cycle", one_cycle_ref, dict(total_steps=7, max_lr=1.0, pct_start=0.5)),
    ("cyclic", cyclic_ref, dict(base_lr=0.1, max_lr=1.0, step_size_up=10)),
    ("cyclic", cyclic_ref, dict(base_lr=0.01, max_lr=0.5, step_size_up=7, step_size_down=13,
                                mode="triangular2")),
    ("cyclic", cyclic_ref, dict(base_lr=0.0, max_lr=1.0, step_size_up=12, step_size_down=5,
                                mode="exp_range", gamma=0.98)),
    ("cyclic", cyclic_ref, dict(base_lr=0.2, max_lr=0.4, step_size_up=3, step_size_down=1,
                                mode="triangular")),
    ("step_decay", step_ref, dict(init_value=1.0, step_size=30)),
    ("step_decay", step_ref, dict(init_value=0.5, step_size=7, factor=0.5)),
    ("multistep_decay", multistep_ref, dict(init_value=1.0, milestones=[30, 80])),
    ("multistep_decay", multistep_ref, dict(init_value=0.3, milestones=[0, 10, 10, 50],
                                            factor=0.5)),
    ("multistep_decay", multistep_ref, dict(init_value=0.3, milestones=[], factor=0.5)),
    ("inverse_time_decay", inverse_time_ref, dict(init_value=1.0, decay_steps=10, decay_rate=0.5)),
    ("inverse_time_decay", inverse_time_ref, dict(init_value=0.1, decay_steps=7, decay_rate=2.0,
                                                  staircase=True)),
    ("cosine_restarts", restarts_ref, dict(init_value=1.0, first_decay_steps=10, t_mul=1.0)),
    ("cosine_restarts", restarts_ref, dict(init_value=1.0, first_decay_steps=10)),
    ("cosine_restarts", restarts_ref, dict(init_value=0.5, first_decay_steps=4, t_mul=2.0,
                                           m_mul=0.7, alpha=0.1)),
    ("cosine_restarts", restarts_ref, dict(init_value=1.0, first_decay_steps=3, t_mul=3.0,
                                           m_mul=0.5)),
    ("cosine_restarts", restarts_ref, dict(init_value=1.0, first_decay_steps=13, t_mul=1.0,
                                           m_mul=0.9, alpha=0.2)),
    ("cosine_restarts", restarts_ref, dict(init_value=1.0, first_decay_steps=16, t_mul=0.5,
                                           alpha=0.05)),
    ("cosine_restarts", restarts_ref, dict(init_value=1.0, first_decay_steps=1, t_mul=2.0)),
    ("warmup_stable_decay", wsd_ref, dict(peak_value=1.0, total_steps=100, warmup_steps=10,
                                          decay_steps=20)),
    ("warmup_stable_decay", wsd_ref, dict(peak_value=3e-3, total_steps=120, warmup_steps=0,
                                          decay_steps=50, init_value=1e-4, end_value=1e-5,
                                          decay_shape="cosine")),
    ("warmup_stable_decay", wsd_ref, dict(peak_value=1.0, total_steps=90, warmup_steps=15,
                                          decay_steps=75, init_value=0.1, end_value=0.01,
                                          decay_shape="1-sqrt")),
    ("warmup_stable_decay", wsd_ref, dict(peak_value=1.0, total_steps=40, warmup_steps=5,
                                          decay_steps=0, end_value=0.5)),
]


@STRICT
@pytest.mark.parametrize("name, ref, kwargs", FORMULA_CASES)
def test_matches_formula(name, ref, kwargs):
    expected = [ref(int(t), **kwargs) for t in STEPS]
    np.testing.assert_allclose(curve(getattr(jaxlr, name)(**kwargs)), expected, **TOL64)


@STRICT
@pytest.mark.parametrize("warmup_steps, init_value", [(0, 0.0), (1, 0.0), (10, 0.1), (25, 2.0)])
def test_warmup_formula(warmup_steps, init_value):
    s = jaxlr.warmup(jaxlr.cosine_decay(0.8, 40), warmup_steps, init_value)
    expected = [warmup_cosine_ref(int(t), warmup_steps, init_value, 0.8, 40) for t in STEPS]
    np.testing.assert_allclose(curve(s), expected, **TOL64)


def test_warmup_accepts_optax_schedule():
    s = jaxlr.warmup(optax.exponential_decay(1.0, 10, 0.5), 5)
    expected = [t / 5 if t < 5 else 0.5 ** ((t - 5) / 10) for t in STEPS]
    np.testing.assert_allclose(curve(s), expected, **TOL64)


@STRICT
@pytest.mark.parametrize("first, t_mul, m_mul", [(1, 2.0, 0.9), (10, 1.0, 0.9), (3, 3.0, 0.8),
                                                 (5, 2.0, 1.0), (7, 1.5, 1.0), (16, 0.5, 0.9)])
def test_cosine_restarts_exact_restarts(first, t_mul, m_mul):
    # the restart steps (sums of the periods) that are whole numbers give the restart value; in
    # float32, Keras' floor(log(...) / log(t_mul)) is one short at e.g. step 8191 = 2**13 - 1
    starts, length = [0], first
    while starts[-1] + length < 300_000 and length >= 1 and len(starts) < 300:
        starts.append(starts[-1] + length)
        length *= t_mul
    starts = [s for s in starts if float(s).is_integer()]
    starts += [0] * (300 - len(starts))  # one shape for all cases: eager ops compile once
    got = curve(jaxlr.cosine_restarts(2.0, first, t_mul, m_mul), np.array(starts, np.int32))
    periods = [round(math.log(1 - s / first * (1 - t_mul)) / math.log(t_mul)) if t_mul != 1
               else s // first for s in starts]
    # an i off by one would be off by a factor m_mul (or give the bottom of a cosine if m_mul=1)
    np.testing.assert_allclose(got, [2.0 * m_mul**i for i in periods], rtol=1e-4, atol=1e-30)


# ------------------------------------------------------------------- a. real torch schedulers
def torch_lrs(make_scheduler, n, lr=1.0):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize("kwargs", [
    dict(total_steps=100, max_lr=1.0),
    dict(total_steps=100, max_lr=0.1, pct_start=0.25, anneal_strategy="linear"),
    dict(total_steps=61, max_lr=2.0, pct_start=0.2, div_factor=10.0, final_div_factor=50.0,
         three_phase=True),
    dict(total_steps=40, max_lr=1.0, pct_start=0.35, anneal_strategy="linear", three_phase=True),
])
def test_one_cycle_matches_torch(kwargs):
    n = kwargs["total_steps"]
    expected = torch_lrs(lambda m, opt: m.OneCycleLR(opt, cycle_momentum=False, **kwargs), n)
    np.testing.assert_allclose(curve(jaxlr.one_cycle(**kwargs))[:n], expected, **TOL64)


@pytest.mark.parametrize("kwargs", [
    dict(base_lr=0.1, max_lr=1.0, step_size_up=10),
    dict(base_lr=0.01, max_lr=0.5, step_size_up=7, step_size_down=13, mode="triangular2"),
    dict(base_lr=0.0, max_lr=1.0, step_size_up=12, step_size_down=5, mode="exp_range", gamma=0.98),
])
def test_cyclic_matches_torch(kwargs):
    expected = torch_lrs(lambda m, opt: m.CyclicLR(opt, cycle_momentum=False, **kwargs), 150)
    np.testing.assert_allclose(curve(jaxlr.cyclic(**kwargs))[:150], expected, **TOL64)


@pytest.mark.parametrize("step_size, factor", [(30, 0.1), (7, 0.5), (1, 0.9)])
def test_step_decay_matches_torch(step_size, factor):
    expected = torch_lrs(lambda m, opt: m.StepLR(opt, step_size, gamma=factor), 150, lr=0.5)
    np.testing.assert_allclose(curve(jaxlr.step_decay(0.5, step_size, factor))[:150],
                               expected, **TOL64)


@pytest.mark.parametrize("milestones, factor", [([30, 80], 0.1), ([0, 10, 10, 50], 0.5),
                                                ([5, 5, 5], 0.9)])
def test_multistep_decay_matches_torch(milestones, factor):
    expected = torch_lrs(lambda m, opt: m.MultiStepLR(opt, milestones, gamma=factor), 150, lr=0.5)
    got = curve(jaxlr.multistep_decay(0.5, milestones, factor))[:150]
    np.testing.assert_allclose(got, expected, **TOL64)


# -------------------------------------------- b. every numeric parameter may be traced (vmapped)
LIN = jaxlr.linear(0.0, 1.0, 10)
BASE = {
    "constant": dict(value=0.5),
    "linear": dict(init_value=1.0, end_value=0.1, transition_steps=20, transition_begin=5),
    "polynomial_decay": dict(init_value=1.0, end_value=0.1, power=2.0, transition_steps=20,
                             transition_begin=5),
    "exponential_decay": dict(init_value=1.0, transition_steps=10, decay_rate=0.5,
                              transition_begin=5, end_value=0.05),
    "cosine_decay": dict(init_value=1.0, decay_steps=30, alpha=0.1, exponent=1.0),
    "warmup_cosine_decay": dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30,
                                end_value=0.1, exponent=1.0),
    "join": dict(schedules=[LIN, jaxlr.cosine_decay(1.0, 10), jaxlr.constant(0.05)],
                 boundaries=[10, 25]),
    "step_decay": dict(init_value=1.0, step_size=7, factor=0.5),
    "multistep_decay": dict(init_value=1.0, milestones=[5, 12, 12, 30], factor=0.5),
    "one_cycle": dict(total_steps=40, max_lr=1.0, pct_start=0.3, div_factor=25.0,
                      final_div_factor=1e4),
    "cyclic": dict(base_lr=0.1, max_lr=1.0, step_size_up=6, step_size_down=4, mode="exp_range",
                   gamma=0.99),
    "inverse_time_decay": dict(init_value=1.0, decay_steps=5, decay_rate=0.5),
    "cosine_restarts": dict(init_value=1.0, first_decay_steps=5, t_mul=2.0, m_mul=0.8, alpha=0.1),
    "warmup": dict(schedule=jaxlr.cosine_decay(1.0, 20), warmup_steps=5, init_value=0.1),
    "warmup_stable_decay": dict(peak_value=1.0, total_steps=40, warmup_steps=5, decay_steps=10,
                                init_value=0.1, end_value=0.01, decay_shape="1-sqrt"),
    "tabulated": dict(values=[1.0, 0.5, 0.25]),
}
# schedule -> {parameter: values it is vmapped over}, then overrides of BASE for some variants
SWEEPS = [
    ("constant", dict(value=[0.1, 0.5, 2.0]), {}),
    ("linear", dict(init_value=[0.0, 1.0, 3.0], end_value=[0.0, 0.5, 2.0],
                    transition_steps=[1, 7, 20, 60], transition_begin=[0, 3, 50]), {}),
    ("polynomial_decay", dict(init_value=[0.5, 1.0], end_value=[0.0, 0.3], power=[0.5, 1.0, 3.0],
                              transition_steps=[1, 10, 33], transition_begin=[0, 4, 11]), {}),
    ("exponential_decay", dict(init_value=[0.5, 1.0], transition_steps=[1, 10, 33],
                               decay_rate=[0.5, 0.9, 1.2], transition_begin=[0, 5, 12],
                               end_value=[0.05, 0.2, 2.0]), {}),
    ("exponential_decay", dict(transition_steps=[1, 10, 33]), dict(staircase=True)),
    ("cosine_decay", dict(init_value=[0.5, 1.0], decay_steps=[1, 10, 45], alpha=[0.0, 0.1, 0.5],
                          exponent=[0.5, 1.0, 2.0]), {}),
    ("warmup_cosine_decay", dict(init_value=[0.0, 0.2], peak_value=[0.0, 0.5, 2.0],
                                 warmup_steps=[0, 1, 5, 29], decay_steps=[6, 30, 45],
                                 end_value=[0.0, 0.1, 0.4], exponent=[0.5, 1.0, 2.0]), {}),
    ("join", dict(boundaries=[[10, 25], [0, 1], [3, 40]]), {}),
    ("step_decay", dict(init_value=[0.5, 1.0], step_size=[1, 7, 13], factor=[0.1, 0.5, 0.9]), {}),
    ("multistep_decay", dict(init_value=[0.5, 1.0], factor=[0.1, 0.5, 0.9],
                             milestones=[[5, 12, 12, 30], [0, 1, 2, 3], [10, 20, 30, 45]]), {}),
    ("one_cycle", dict(total_steps=[10, 40, 97], max_lr=[0.1, 1.0, 3.0],
                       pct_start=[0.1, 0.3, 0.5, 0.7], div_factor=[1.0, 25.0, 100.0],
                       final_div_factor=[1.0, 1e4]), {}),
    ("one_cycle", dict(total_steps=[10, 40, 97]), dict(three_phase=True, anneal_strategy="linear")),
    ("one_cycle", dict(pct_start=[0.1, 0.3, 0.45]), dict(three_phase=True)),
    ("cyclic", dict(base_lr=[0.0, 0.1], max_lr=[0.5, 1.0], step_size_up=[1, 6, 15],
                    gamma=[0.9, 0.99, 1.0]), {}),
    ("cyclic", dict(step_size_up=[1, 6, 15]), dict(mode="triangular2", step_size_down=None)),
    ("cyclic", dict(step_size_down=[1, 4, 20]), dict(mode="triangular")),
    ("inverse_time_decay", dict(init_value=[0.5, 1.0], decay_steps=[1, 5, 17],
                                decay_rate=[0.0, 0.5, 3.0]), {}),
    ("inverse_time_decay", dict(decay_steps=[1, 5, 17]), dict(staircase=True)),
    ("cosine_restarts", dict(init_value=[0.5, 1.0], first_decay_steps=[1, 5, 13],
                             t_mul=[0.5, 1.0, 2.0, 3.0], m_mul=[0.0, 0.5, 1.0],
                             alpha=[0.0, 0.1, 0.5]), {}),
    ("warmup", dict(warmup_steps=[0, 1, 5, 30], init_value=[0.0, 0.1, 2.0]), {}),
    ("warmup_stable_decay", dict(peak_value=[0.5, 1.0], total_steps=[15, 40, 60],
                                 warmup_steps=[0, 5, 30], decay_steps=[0, 10, 35],
                                 init_value=[0.0, 0.1], end_value=[0.0, 0.01, 0.5]), {}),
    ("warmup_stable_decay", dict(decay_steps=[0, 10, 35]), dict(decay_shape="cosine")),
    ("tabulated", dict(values=[[1.0, 0.5, 0.25], [0.3, 0.2, 0.1]]), {}),
]
# (schedule, parameter, values, overrides of BASE)
TABLE = [(name, param, values, overrides)
         for name, params, overrides in SWEEPS for param, values in params.items()]
NON_NUMERIC = {"schedule", "schedules", "anneal_strategy", "mode", "decay_shape", "staircase",
               "three_phase"}
TABLE_STEPS = jnp.arange(64)


@STRICT
@pytest.mark.parametrize("name, param, values, overrides", TABLE,
                         ids=[f"{r[0]}-{r[1]}-{i}" for i, r in enumerate(TABLE)])
def test_traced_parameter(name, param, values, overrides):
    fn, base = getattr(jaxlr, name), {**BASE[name], **overrides}
    traced = jax.jit(jax.vmap(lambda v: fn(**{**base, param: v})(TABLE_STEPS)))(
        jnp.asarray(values, jnp.float32))
    eager = np.stack([np.asarray(fn(**{**base, param: v})(TABLE_STEPS)) for v in values])
    assert np.isfinite(eager).all()
    np.testing.assert_allclose(np.asarray(traced), eager, rtol=1e-6, atol=1e-7)


def test_table_covers_every_numeric_parameter():
    covered = {(name, param) for name, param, _, _ in TABLE}
    wanted = {(name, p) for name in PUBLIC
              for p in inspect.signature(getattr(jaxlr, name)).parameters if p not in NON_NUMERIC}
    assert wanted - covered == set()
    assert set(BASE) == set(PUBLIC)


@STRICT
def test_traced_step_and_elements():
    steps = jnp.arange(64)
    for name, kwargs in BASE.items():
        s = getattr(jaxlr, name)(**kwargs)
        np.testing.assert_allclose(jax.jit(s)(steps), s(steps), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(jax.vmap(s)(steps), s(steps), rtol=1e-6, atol=1e-7)
    # single traced elements inside a list of milestones / boundaries
    got = jax.jit(lambda a: jaxlr.multistep_decay(1.0, [a, 20.0], 0.5)(steps))(5.0)
    np.testing.assert_allclose(got, jaxlr.multistep_decay(1.0, [5, 20], 0.5)(steps))
    got = jax.jit(lambda b: jaxlr.join([LIN, jaxlr.constant(0.3)], [b])(steps))(7.0)
    np.testing.assert_allclose(got, jaxlr.join([LIN, jaxlr.constant(0.3)], [7])(steps))


@pytest.mark.parametrize("name", ["exponential_decay", "inverse_time_decay"])
def test_traced_staircase(name):
    fn = getattr(jaxlr, name)
    got = jax.jit(jax.vmap(lambda sc: fn(**BASE[name], staircase=sc)(TABLE_STEPS)))(
        jnp.array([False, True]))
    eager = [fn(**BASE[name], staircase=sc)(TABLE_STEPS) for sc in (False, True)]
    np.testing.assert_allclose(got, np.stack(eager), rtol=1e-6, atol=1e-7)


def test_gradient_through_hyperparameters_is_finite():
    for name, param in [("one_cycle", "pct_start"), ("cosine_restarts", "t_mul"),
                        ("warmup_cosine_decay", "warmup_steps"), ("cyclic", "step_size_up"),
                        ("warmup_stable_decay", "decay_steps")]:
        fn = getattr(jaxlr, name)
        g = jax.jit(jax.grad(lambda v: fn(**{**BASE[name], param: v})(TABLE_STEPS).sum()))(
            jnp.float32(BASE[name][param]))
        assert np.isfinite(g), (name, param)


# ------------------------------------------------------------- c. eager validation of arguments
S = jaxlr.constant(1.0)
INVALID = [
    (lambda: jaxlr.constant(np.array([0.1, 0.2])), r"value must be a scalar.*vmap"),
    (lambda: jaxlr.linear(jnp.array([0.1, 0.2]), 0.0, 10), r"init_value must be a scalar.*vmap"),
    (lambda: jaxlr.one_cycle(100, [0.1, 1.0]), r"max_lr must be a scalar.*vmap"),
    (lambda: jaxlr.linear(float("nan"), 0.0, 10), r"init_value must be finite"),
    (lambda: jaxlr.linear(1.0, 0.0, 0), r"transition_steps must be > 0, got transition_steps=0"),
    (lambda: jaxlr.linear(1.0, 0.0, 10, -1), r"transition_begin must be >= 0, got "
                                             r"transition_begin=-1"),
    (lambda: jaxlr.polynomial_decay(1.0, 0.0, 0.0, 10), r"power must be > 0, got power=0"),
    (lambda: jaxlr.polynomial_decay(1.0, 0.0, 1.0, -5), r"transition_steps=-5"),
    (lambda: jaxlr.exponential_decay(1.0, 10, 0.0), r"decay_rate must be > 0, got decay_rate=0"),
    (lambda: jaxlr.exponential_decay(1.0, -3, 0.5), r"transition_steps must be > 0"),
    (lambda: jaxlr.exponential_decay(1.0, 10, 0.5, end_value=[0.1]), r"end_value must be a "
                                                                      r"scalar"),
    (lambda: jaxlr.cosine_decay(1.0, 0), r"decay_steps must be > 0, got decay_steps=0"),
    (lambda: jaxlr.warmup_cosine_decay(0.0, 1.0, 500, 100),
     r"warmup_steps must be < decay_steps, got warmup_steps=500, decay_steps=100"),
    (lambda: jaxlr.warmup_cosine_decay(0.0, 1.0, 100, 100), r"warmup_steps must be < decay_steps"),
    (lambda: jaxlr.warmup_cosine_decay(0.0, 1.0, -1, 100), r"warmup_steps must be >= 0"),
    (lambda: jaxlr.join([S, S], [10, 20]), r"boundaries must have .*1 entries, got 2"),
    (lambda: jaxlr.join([S, S, S], [20, 10]), r"boundaries must be strictly increasing.*20.*10"),
    (lambda: jaxlr.join([S, S, S], [10, 10]), r"boundaries must be strictly increasing"),
    (lambda: jaxlr.join([S, S], [-1]), r"boundaries must all be >= 0, got boundaries\[0\]=-1"),
    (lambda: jaxlr.join([S, 0.1], [10]), r"schedules must be a non-empty list"),
    (lambda: jaxlr.join([], []), r"schedules must be a non-empty list"),
    (lambda: jaxlr.step_decay(1.0, 0), r"step_size must be > 0, got step_size=0"),
    (lambda: jaxlr.step_decay(1.0, 10, -0.5), r"factor must be >= 0, got factor=-0.5"),
    (lambda: jaxlr.multistep_decay(1.0, [30, 10]), r"milestones must be non-decreasing.*sort"),
    (lambda: jaxlr.multistep_decay(1.0, [-5, 10]), r"milestones must all be >= 0"),
    (lambda: jaxlr.multistep_decay(1.0, 30), r"milestones must be a sequence"),
    (lambda: jaxlr.one_cycle(0, 1.0), r"total_steps must be > 0, got total_steps=0"),
    (lambda: jaxlr.one_cycle(100, 1.0, pct_start=0.0), r"pct_start must be > 0, got pct_start=0"),
    (lambda: jaxlr.one_cycle(100, 1.0, pct_start=1.0), r"pct_start must be < 1, got pct_start=1"),
    (lambda: jaxlr.one_cycle(100, 1.0, pct_start=1.5), r"pct_start=1.5"),
    (lambda: jaxlr.one_cycle(3, 1.0, pct_start=0.3),
     r"pct_start \* total_steps must be > 1.*divides by zero.*pct_start=0.3, total_steps=3"),
    (lambda: jaxlr.one_cycle(100, 1.0, div_factor=0.0), r"div_factor must be > 0, got "
                                                        r"div_factor=0"),
    (lambda: jaxlr.one_cycle(100, 1.0, final_div_factor=-1.0), r"final_div_factor=-1"),
    (lambda: jaxlr.one_cycle(100, 1.0, anneal_strategy="cosine"),
     r"anneal_strategy must be one of 'cos', 'linear', got anneal_strategy='cosine'"),
    (lambda: jaxlr.cyclic(0.1, 1.0, step_size_up=0), r"step_size_up must be > 0"),
    (lambda: jaxlr.cyclic(0.1, 1.0, step_size_down=-2), r"step_size_down must be > 0, got "
                                                        r"step_size_down=-2"),
    (lambda: jaxlr.cyclic(0.1, 1.0, mode="exp_range", gamma=0.0), r"gamma must be > 0, got "
                                                                  r"gamma=0"),
    (lambda: jaxlr.cyclic(0.1, 1.0, mode="triangle"),
     r"mode must be one of 'triangular', 'triangular2', 'exp_range', got mode='triangle'"),
    (lambda: jaxlr.inverse_time_decay(1.0, 0, 0.5), r"decay_steps must be > 0"),
    (lambda: jaxlr.inverse_time_decay(1.0, 10, -0.5), r"decay_rate must be >= 0, got "
                                                      r"decay_rate=-0.5"),
    (lambda: jaxlr.cosine_restarts(1.0, 0), r"first_decay_steps must be > 0"),
    (lambda: jaxlr.cosine_restarts(1.0, 10, t_mul=0.0), r"t_mul must be > 0, got t_mul=0"),
    (lambda: jaxlr.cosine_restarts(1.0, 10, m_mul=-1.0), r"m_mul must be >= 0, got m_mul=-1"),
    (lambda: jaxlr.warmup(S, -1), r"warmup_steps must be >= 0, got warmup_steps=-1"),
    (lambda: jaxlr.warmup(S, 10, init_value="a"), r"init_value must be a number"),
    (lambda: jaxlr.warmup_stable_decay(1.0, 100, 50, 60),
     r"warmup_steps \+ decay_steps must be <= total_steps, got warmup_steps=50, decay_steps=60, "
     r"total_steps=100"),
    (lambda: jaxlr.warmup_stable_decay(1.0, 0, 0, 0), r"total_steps must be > 0"),
    (lambda: jaxlr.warmup_stable_decay(1.0, 100, 10, -1), r"decay_steps must be >= 0"),
    (lambda: jaxlr.warmup_stable_decay(1.0, 100, 10, 20, decay_shape="sqrt"),
     r"decay_shape must be one of 'linear', 'cosine', '1-sqrt', got decay_shape='sqrt'"),
]


@pytest.mark.parametrize("make, match", INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_traced_arguments_skip_concrete_checks():
    # a traced relation cannot be checked: it must compile (and give finite values if valid)
    f = jax.jit(lambda w, d: jaxlr.warmup_cosine_decay(0.0, 1.0, w, d)(TABLE_STEPS))
    assert np.isfinite(np.asarray(f(5.0, 30.0))).all()
    g = jax.jit(lambda p: jaxlr.one_cycle(3, 1.0, pct_start=p)(TABLE_STEPS))
    assert np.isfinite(np.asarray(g(0.2))).all()  # pct_start * total <= 1: guarded, no NaN


@STRICT
# ----------------------------------------------------------------- d. jit == eager, float32
@pytest.mark.parametrize("name", ["linear", "one_cycle", "cosine_restarts", "multistep_decay",
                                  "warmup_stable_decay", "join"])
def test_jit_equals_eager_and_float32(name):
    s = getattr(jaxlr, name)(**BASE[name])
    eager, jitted = s(jnp.arange(100)), jax.jit(s)(jnp.arange(100))
    assert eager.dtype == jitted.dtype == jnp.float32
    assert eager.shape == (100,)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    assert s(7).dtype == jnp.float32 and s(7).shape == ()
    np.testing.assert_allclose(s(7), eager[7], rtol=1e-6)
    np.testing.assert_allclose(s(jnp.float32(7.0)), eager[7], rtol=1e-6)


def test_constant_shape_and_dtype():
    s = jaxlr.constant(jnp.float16(0.5))
    assert s(jnp.arange(6).reshape(2, 3)).shape == (2, 3)
    assert s(jnp.arange(6)).dtype == jnp.float32


# --------------------------------------------------- e. no negative learning rate when concrete
# (schedule, parameter): every argument that is a learning rate (or, for alpha, a fraction of
# one). A negative value would train by gradient ascent, unflagged; sgd(-0.1) is refused too.
NEGATIVE = [("constant", "value"), ("linear", "init_value"), ("linear", "end_value"),
            ("polynomial_decay", "init_value"), ("polynomial_decay", "end_value"),
            ("exponential_decay", "init_value"), ("exponential_decay", "end_value"),
            ("cosine_decay", "init_value"), ("cosine_decay", "alpha"),
            ("warmup_cosine_decay", "init_value"), ("warmup_cosine_decay", "peak_value"),
            ("warmup_cosine_decay", "end_value"), ("step_decay", "init_value"),
            ("multistep_decay", "init_value"), ("one_cycle", "max_lr"), ("cyclic", "base_lr"),
            ("cyclic", "max_lr"), ("inverse_time_decay", "init_value"),
            ("cosine_restarts", "init_value"), ("cosine_restarts", "alpha"),
            ("warmup", "init_value"), ("warmup_stable_decay", "peak_value"),
            ("warmup_stable_decay", "init_value"), ("warmup_stable_decay", "end_value")]


@pytest.mark.parametrize("name, param", NEGATIVE, ids=[f"{n}-{p}" for n, p in NEGATIVE])
def test_negative_learning_rate_is_refused(name, param):
    with pytest.raises(ValueError, match=rf"^{param} must be >= 0, got {param}=-0.1; .*"
                                         r"gradient ascent"):
        getattr(jaxlr, name)(**{**BASE[name], param: -0.1})
    getattr(jaxlr, name)(**{**BASE[name], param: 0.0})  # zero is a valid learning rate


def test_negative_table_covers_every_learning_rate_parameter():
    def is_lr(p):
        return p.endswith("value") or p.endswith("_lr") or p == "alpha"

    wanted = {(name, p) for name in PUBLIC
              for p in inspect.signature(getattr(jaxlr, name)).parameters if is_lr(p)}
    assert wanted == set(NEGATIVE)


def test_negative_constant_schedule_refused_by_optimizer_too():
    with pytest.raises(ValueError, match="value must be >= 0, got value=-0.1"):
        jaxlr.sgd(jaxlr.constant(-0.1))
    with pytest.raises(ValueError, match="init_value must be >= 0, got init_value=-0.1"):
        jaxlr.adam(jaxlr.cosine_decay(-0.1, 100))


@pytest.mark.parametrize("name, param", NEGATIVE, ids=[f"{n}-{p}" for n, p in NEGATIVE])
def test_traced_negative_value_is_not_checked(name, param):
    # traced: no check and no Python branch on the value (eval_shape traces, it would raise)
    out = jax.eval_shape(lambda v: getattr(jaxlr, name)(**{**BASE[name], param: v})(TABLE_STEPS),
                         jnp.float32(-0.1))
    assert out.shape == TABLE_STEPS.shape and out.dtype == jnp.float32
    if name == "constant":  # lr(t) = value
        np.testing.assert_array_equal(jax.jit(lambda v: jaxlr.constant(v)(3))(-0.1),
                                      np.float32(-0.1))


def test_tabulated_reads_step_t_from_the_table_and_keeps_the_last_value():
    values = np.array([0.5, 0.25, 0.125], np.float32)
    s = jaxlr.tabulated(values)
    np.testing.assert_array_equal(curve(s, np.arange(-2, 6)),
                                  [0.5, 0.5, 0.5, 0.25, 0.125, 0.125, 0.125, 0.125])
    traced = jax.jit(lambda v, t: jaxlr.tabulated(v)(t))(jnp.asarray(values), 1)
    assert float(traced) == 0.25
    with pytest.raises(ValueError, match=r"values must be finite and >= 0, got values\[1\]=-1"):
        jaxlr.tabulated([0.1, -1.0])
    with pytest.raises(ValueError, match="1-D table"):
        jaxlr.tabulated(np.ones((2, 2)))

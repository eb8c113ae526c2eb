"""Calls on one shared model from several threads give the serial results and leave it as it was."""

import threading

import pytest
import torch

import attribkit as ak
from attribkit.testing import TinyCNN, as_users_have_it, assert_model_untouched
from attribkit.torch import forward_hook, model_guard

THREADS = 4


def seeded_options(spec):
    """Stochastic methods get a fixed seed, so that every call must give the same map."""
    return {"seed": 0} if "seed" in spec.options and spec.options["seed"] is None else {}


def run_in_threads(fn, calls_per_thread):
    """Start ``THREADS`` threads together; each calls ``fn()`` that many times.
    Returns every result and every exception."""
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def work():
        barrier.wait()
        for _ in range(calls_per_thread):
            try:
                results.append(fn())
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def shared_model(mode, spec=None):
    if spec is not None and "attention" in spec.needs:  # the attention family reads a transformer's
        from tests.test_vit_models import timm_vit      # attention: a small timm ViT, 3x3 patches

        model = timm_vit(img_size=12, patch_size=4)
        return model.eval() if mode == "eval" else model.train()
    torch.manual_seed(0)
    model = TinyCNN()
    return model.eval() if mode == "eval" else as_users_have_it(model)


@pytest.mark.parametrize("method", [s.name for s in ak.methods() if "box_target" not in s.needs])
def test_every_method_from_four_threads_equals_the_serial_result(method, images):
    spec = ak.get_method(method)
    model = shared_model("train", spec)
    options = seeded_options(spec)
    x = images[:2]
    serial = ak.explain(model, x, method=method, **options)
    with assert_model_untouched(model):
        results, errors = run_in_threads(lambda: ak.explain(model, x, method=method, **options), 3)
    assert not errors, f"{len(errors)} of {THREADS * 3} calls raised: {errors[0]!r}"
    wrong = [r for r in results if not torch.allclose(r.values, serial.values, rtol=1e-6, atol=1e-7)]
    assert not wrong, f"{len(wrong)} of {len(results)} threaded results differ from the serial one"
    assert all(r.target is None or torch.equal(r.target, serial.target) for r in results)
    assert model.training


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "guided_backprop", "ablationcam"])
def test_many_calls_on_one_model(method, mode, images):
    """The race the user reported (Grad-CAM, 4 threads x 10 calls: 38 wrong or raising)."""
    model = shared_model(mode)
    serial = ak.explain(model, images, method=method).values
    results, errors = run_in_threads(lambda: ak.explain(model, images, method=method).values, 10)
    assert not errors, f"{len(errors)} of {THREADS * 10} calls raised: {errors[0]!r}"
    assert sum(not torch.allclose(v, serial, rtol=1e-6, atol=1e-7) for v in results) == 0
    assert model.training == (mode == "train")


def test_mixed_methods_at_once_on_one_model(images):
    """Shared-access kernels (our CAMs) and exclusive ones (Captum's hooks, Ablation-CAM's
    replay) interleave on one model without seeing each other's hooks."""
    model = shared_model("train")
    methods = ["gradcam", "captum.layer_gradcam", "ablationcam", "saliency"]
    serial = {m: ak.explain(model, images, method=m, layer="features").values
              if "layer" in ak.get_method(m).needs else ak.explain(model, images, method=m).values
              for m in methods}
    turn = iter(range(10_000))
    lock = threading.Lock()

    def call():
        with lock:
            m = methods[next(turn) % len(methods)]
        kw = {"layer": "features"} if "layer" in ak.get_method(m).needs else {}
        return m, ak.explain(model, images, method=m, **kw).values

    with assert_model_untouched(model):
        results, errors = run_in_threads(call, 8)
    assert not errors, repr(errors[0])
    assert all(torch.allclose(v, serial[m], rtol=1e-6, atol=1e-7) for m, v in results)


def test_a_capture_hook_ignores_other_threads_forwards():
    model = torch.nn.Linear(3, 2)
    seen, started, finish = [], threading.Event(), threading.Event()

    def hold_a_hook():
        with forward_hook(model, lambda m, a, o: seen.append(threading.get_ident())):
            started.set()
            finish.wait(5)
            model(torch.zeros(1, 3))

    t = threading.Thread(target=hold_a_hook)
    t.start()
    started.wait(5)
    model(torch.zeros(1, 3))  # this thread's forward: the other thread's hook must stay silent
    finish.set()
    t.join()
    assert seen == [t.ident]
    assert not model._forward_hooks


def test_exclusive_guard_waits_for_shared_ones_and_the_last_one_out_restores():
    model = TinyCNN().train()
    inside_shared, release_shared = threading.Event(), threading.Event()
    order = []

    def shared():
        with model_guard(model, exclusive=False):
            order.append("shared in")
            inside_shared.set()
            release_shared.wait(5)
            order.append("shared out")

    def exclusive():
        inside_shared.wait(5)
        with model_guard(model):
            order.append("exclusive in")
            assert not model.training

    a, b = threading.Thread(target=shared), threading.Thread(target=exclusive)
    a.start()
    b.start()
    inside_shared.wait(5)
    b.join(0.2)  # the exclusive guard must still be waiting
    assert b.is_alive() and order == ["shared in"]
    assert not model.training  # eval for the call in flight
    release_shared.set()
    a.join()
    b.join()
    assert order == ["shared in", "shared out", "exclusive in"]
    assert model.training


def test_nested_exclusive_inside_shared_on_two_threads_does_not_deadlock():
    model = TinyCNN()
    both_shared = threading.Barrier(2)
    done = []

    def nested():
        with model_guard(model, exclusive=False):
            both_shared.wait(5)
            with model_guard(model):
                done.append(threading.get_ident())

    threads = [threading.Thread(target=nested) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(done) == 2 and not any(t.is_alive() for t in threads)

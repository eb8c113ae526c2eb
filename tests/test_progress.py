"""Long calls show a progress bar on stderr; short ones, and ATTRIBKIT_PROGRESS=0, show none."""

import pytest

import attribkit as ak


@pytest.mark.parametrize("method, label", [("scorecam", "scorecam"), ("ablationcam", "ablationcam"),
                                           ("occlusion", "perturbed images")])
def test_bar_when_asked_for(method, label, tiny_cnn, images, monkeypatch, capsys):
    monkeypatch.setenv("ATTRIBKIT_PROGRESS", "always")
    ak.explain(tiny_cnn, images, method=method)
    err = capsys.readouterr().err
    assert label in err and "it/s" not in err  # counted in images/rows, not iterations


def test_quiet_when_quick_or_switched_off(tiny_cnn, images, monkeypatch, capsys):
    ak.explain(tiny_cnn, images, method="scorecam")  # well under the 2 s delay
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("ATTRIBKIT_PROGRESS", "0")
    ak.explain(tiny_cnn, images, method="scorecam")
    assert capsys.readouterr().err == ""


def test_bars_are_labelled_and_silent_inside_a_parent(monkeypatch, capsys):
    from attribkit.progress import labelled, progress

    monkeypatch.setenv("ATTRIBKIT_PROGRESS", "always")
    with labelled("rise"), labelled("inner method"):
        with progress(3, "perturbed images", unit="image") as outer:
            with progress(2, "inner loop") as inner:
                inner.update(2)
            outer.update(3)
    err = capsys.readouterr().err
    assert "rise: perturbed images" in err  # the outermost label names what runs
    assert "inner" not in err and "/2" not in err  # no bar inside another bar


def test_noise_tunnel_shows_one_bar_around_its_method(tiny_cnn, images, monkeypatch, capsys):
    monkeypatch.setenv("ATTRIBKIT_PROGRESS", "always")
    ak.explain(tiny_cnn, images, method="scorecam", noise_tunnel="smoothgrad")
    err = capsys.readouterr().err
    assert "scorecam: smoothgrad: noisy copies" in err and "/100 " in err  # 4 images x 25 copies
    bars = [line for line in err.split("\r") if "%|" in line]
    assert bars and all("noisy copies" in line for line in bars)  # Score-CAM's own bars silent

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

import pytest

from attribkit.errors import DuplicateMethodError, InvalidOptionError, SpecError, UnknownMethodError
from attribkit.registry import MethodSpec, Registry


def spec(name="m", plugin="p", **kw):
    kw.setdefault("family", "gradient")
    kw.setdefault("factory", "pkg.mod:fn")
    return MethodSpec(name=name, plugin=plugin, **kw)


def test_lookup_by_name_alias_and_loose_spelling():
    reg = Registry()
    s = spec("grad_cam", aliases=("gradcam",))
    reg.add(s)
    assert reg.get("grad_cam") is s
    assert reg.get("gradcam") is s
    assert reg.get("Grad-CAM") is s
    assert "GRAD CAM" in reg and "nope" not in reg


def test_duplicate_name_names_both_plugins():
    reg = Registry()
    reg.add(spec("saliency", plugin="first"))
    with pytest.raises(DuplicateMethodError, match=r"'saliency'.*'second'.*'first'"):
        reg.add(spec("saliency", plugin="second"))


def test_duplicate_alias_names_both_plugins():
    reg = Registry()
    reg.add(spec("a", aliases=("shared",), plugin="one"))
    with pytest.raises(DuplicateMethodError, match=r"'shared'.*'two'.*'a'.*'one'"):
        reg.add(spec("b", aliases=("shared",), plugin="two"))
    assert "b" not in reg, "a rejected spec must not be half-registered"


def test_unknown_method_lists_close_matches():
    reg = Registry()
    reg.add(spec("saliency"))
    reg.add(spec("guided_backprop"))
    with pytest.raises(UnknownMethodError, match=r"'salincy'.*did you mean 'saliency'"):
        reg.get("salincy")


def test_remove_plugin_drops_its_methods_only():
    reg = Registry()
    reg.add(spec("a", aliases=("aa",), plugin="one"))
    reg.add(spec("b", plugin="two"))
    reg.remove_plugin("one")
    assert [s.name for s in reg] == ["b"]
    assert "aa" not in reg


@pytest.mark.parametrize("bad", [
    dict(name="Bad Name"),
    dict(family="magic"),
    dict(output="voxel"),
    dict(sign="maybe"),
    dict(needs=("telepathy",)),
    dict(factory="no_colon"),
    dict(options={"not valid": 1}),
])
def test_invalid_specs_are_rejected_with_the_field(bad):
    kw = dict(name="m", family="gradient", factory="pkg:fn")
    kw.update(bad)
    with pytest.raises(SpecError):
        MethodSpec(**kw)


def test_bind_options_defaults_unknown_and_types():
    s = spec(options={"abs": True, "n_samples": 50, "stdev": 0.15, "mode": "mean", "extra": None})
    assert s.bind_options({"n_samples": 8}) == {"abs": True, "n_samples": 8, "stdev": 0.15,
                                                "mode": "mean", "extra": None}
    with pytest.raises(InvalidOptionError, match=r"no option 'ab'.*did you mean 'abs'.*valid options: abs, extra, mode, n_samples, stdev"):
        s.bind_options({"ab": False})
    with pytest.raises(InvalidOptionError, match="'abs' .* expects bool"):
        s.bind_options({"abs": 1})
    with pytest.raises(InvalidOptionError, match="'stdev' .* expects float"):
        s.bind_options({"stdev": "big"})
    assert s.bind_options({"stdev": 1})["stdev"] == 1
    assert s.bind_options({"extra": [1, 2]})["extra"] == [1, 2]


def test_factory_string_and_callable_load_once():
    calls = []

    def factory():
        calls.append(1)
        return lambda *a, **k: "impl"

    s = spec(factory=factory)
    assert s.load() is s.load()
    assert calls == [1]
    assert spec(factory="os.path:join").load() is __import__("os").path.join
    with pytest.raises(SpecError, match="not callable"):
        spec(factory=lambda: 42).load()


def test_family_specs_builds_specs_of_one_family():
    from attribkit.registry import MethodSpec, family_specs

    make = family_specs("cam", "pkg.kernels", output="layer", options={"relu": True})
    spec = make("mycam", needs=("layer",), description="d")
    assert isinstance(spec, MethodSpec) and spec.family == "cam" and spec.output == "layer"
    assert spec.factory == "pkg.kernels:mycam" and spec.options == {"relu": True}
    other = make("othercam", module="pkg.other", options={}, output="pixel")
    assert other.factory == "pkg.other:othercam" and other.options == {} and other.output == "pixel"

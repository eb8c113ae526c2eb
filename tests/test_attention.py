"""The attention family (raw attention, attention rollout, generic attention) against
references that compute attention explicitly inside the test, and its guarantees:
the model is untouched (no hook, timm's ``fused_attn`` flags unchanged, no
torch-function mode left), also after errors; batched equals per-image; threads."""

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.errors import InvalidOptionError, LayerError, TargetError
from attribkit.testing import assert_model_untouched
from attribkit.torch.attention import AttentionRecorder, explicit_attention
from tests.test_vit_models import timm_swin, timm_vit, torchvision_vit, vit_images

METHODS = ["raw_attention", "attention_rollout", "generic_attention"]
TARGETS = [1, 4, 2]


# ----------------------------------------------------------------- references


def timm_reference(model, x):
    """timm ViT forward written out, attention as softmax(q kᵀ · scale) explicitly:
    ``(logits, [A per block])`` with every ``A`` (B, heads, N, N) in the graph."""
    maps = []
    h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    for blk in model.blocks:
        y = blk.norm1(h)
        b, n, c = y.shape
        heads = blk.attn.num_heads
        qkv = blk.attn.qkv(y).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5, dim=-1)
        maps.append(a)
        h = h + blk.ls1(blk.attn.proj((a @ v).transpose(1, 2).reshape(b, n, c)))
        h = h + blk.ls2(blk.mlp(blk.norm2(h)))
    return model.forward_head(model.norm(h)), maps


def torchvision_reference(model, x):
    """torchvision ViT forward written out from its parameters, attention explicit."""
    maps = []
    h = model._process_input(x)
    h = torch.cat([model.class_token.expand(len(h), -1, -1), h], dim=1) + model.encoder.pos_embedding
    for layer in model.encoder.layers:
        mha = layer.self_attention
        y = layer.ln_1(h)
        b, n, c = y.shape
        heads = mha.num_heads
        q, k, v = (F.linear(y, w, bias).reshape(b, n, heads, c // heads).transpose(1, 2)
                   for w, bias in zip(mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)))
        a = torch.softmax(q @ k.transpose(-2, -1) / (c // heads) ** 0.5, dim=-1)
        maps.append(a)
        h = h + mha.out_proj((a @ v).transpose(1, 2).reshape(b, n, c))
        h = h + layer.mlp(layer.ln_2(h))
    return model.heads(model.encoder.ln(h)[:, 0]), maps


REFERENCES = {"timm": (timm_vit, timm_reference), "torchvision": (torchvision_vit, torchvision_reference)}


def fuse(a, how):
    return {"mean": a.mean(0), "max": a.max(0).values, "min": a.min(0).values}[how]


def reference_maps(method, reference, model, x, targets, head_fusion="mean", discard_ratio=0.0):
    """The three methods image by image from the reference forward, (B, 1, 4, 4)."""
    logits, maps = reference(model, x)
    grads = torch.autograd.grad(logits[torch.arange(len(x)), targets].sum(), maps)
    out = []
    for i in range(len(x)):
        n = maps[0].shape[-1]
        if method == "raw_attention":
            row = fuse(maps[-1][i], head_fusion)[0, 1:]
        elif method == "attention_rollout":
            r = torch.eye(n, dtype=x.dtype)
            for a in maps:
                a = fuse(a[i].detach(), head_fusion).clone()
                flat = a.flatten()
                drop = flat.argsort()[:int(n * n * discard_ratio)]
                flat[drop[drop != 0]] = 0
                a = 0.5 * flat.reshape(n, n) + 0.5 * torch.eye(n, dtype=x.dtype)
                r = (a / a.sum(1, keepdim=True)) @ r
            row = r[0, 1:]
        else:
            r = torch.eye(n, dtype=x.dtype)
            for a, g in zip(maps, grads):
                r = r + (g[i] * a[i].detach()).clamp(min=0).mean(0) @ r
            row = r[0, 1:]
        out.append(row.reshape(1, 4, 4))
    return torch.stack(out).detach()


def corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.fixture(scope="module", params=list(REFERENCES))
def vit64(request):
    build, reference = REFERENCES[request.param]
    return build().double(), reference


@pytest.mark.parametrize("method", METHODS)
def test_equals_the_explicit_reference_in_float64(vit64, method):
    model, reference = vit64
    x = vit_images(3).double()
    got = ak.explain(model, x, TARGETS, method=method).values
    want = reference_maps(method, reference, model, x, TARGETS)
    assert got.dtype == torch.float64 and got.shape == (3, 1, 4, 4)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert corr(got, want) > 0.999999 and want.std() > 0


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5])
def test_rollout_options_equal_the_reference(vit64, head_fusion, discard_ratio):
    model, reference = vit64
    x = vit_images(2).double()
    got = ak.explain(model, x, method="attention_rollout", head_fusion=head_fusion,
                     discard_ratio=discard_ratio).values
    want = reference_maps("attention_rollout", reference, model, x, [0, 0], head_fusion, discard_ratio)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_float32_is_close_to_the_reference():
    for name, (build, reference) in REFERENCES.items():
        model = build()
        x = vit_images(3)
        for method in METHODS:
            got = ak.explain(model, x, TARGETS, method=method).values
            want = reference_maps(method, reference, model, x, TARGETS)
            assert corr(got, want) > 0.999, (name, method)


# ----------------------------------------------------------------- interception


@pytest.mark.parametrize("kwargs", [
    {}, {"is_causal": True}, {"scale": 0.3}, {"attn_mask": "bool"}, {"attn_mask": "float"}, {"gqa": True},
])
def test_explicit_attention_equals_the_fused_kernel(kwargs):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, dtype=torch.float64) for _ in range(3))
    if kwargs.pop("gqa", False):
        k, v = k[:, :2], v[:, :2]
        kwargs["enable_gqa"] = True
    mask = kwargs.get("attn_mask")
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(5, 5) > 0.3
        kwargs["attn_mask"][:, 0] = True
    elif mask == "float":
        kwargs["attn_mask"] = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    out, probs = explicit_attention(q, k, v, **kwargs)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, **kwargs))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64))


@pytest.mark.parametrize("need_weights, average", [(False, True), (True, True), (True, False)])
def test_multihead_attention_gives_the_callers_outputs(need_weights, average):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, -1] = True
    kw = {"need_weights": need_weights, "average_attn_weights": average, "key_padding_mask": pad}
    want = mha(x, x, x, **kw)
    with AttentionRecorder() as recorder:
        got = mha(x, x, x, **kw)
    torch.testing.assert_close(got[0], want[0])
    assert (got[1] is None) == (want[1] is None)
    if want[1] is not None:
        torch.testing.assert_close(got[1], want[1])
    assert recorder.maps[0].shape == (3, 2, 5, 5)


def test_the_models_output_is_unchanged_by_the_interception():
    for build in (timm_vit, torchvision_vit):
        model, x = build(), vit_images(3)
        with torch.no_grad():
            want = model(x)
            with AttentionRecorder() as recorder:
                got = model(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert len(recorder.maps) == 3


# ----------------------------------------------------------------- guarantees


def fused_flags(model):
    return [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


@pytest.mark.parametrize("method", METHODS)
def test_model_untouched_and_nothing_left_behind(method):
    model = timm_vit().train()
    flags = fused_flags(model)
    assert flags and all(flags)
    with assert_model_untouched(model):
        ak.explain(model, vit_images(2), method=method)
    assert fused_flags(model) == flags and model.training
    assert torch._C._len_torch_function_stack() == 0


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom in the second block")


@pytest.mark.parametrize("method", METHODS)
def test_errors_restore_everything(method):
    model = timm_vit()
    model.blocks[1].mlp = Boom()
    flags = fused_flags(model)
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom in the second block"):
        ak.explain(model, vit_images(2), method=method)
    assert torch._C._len_torch_function_stack() == 0 and fused_flags(model) == flags
    good = timm_vit()
    with assert_model_untouched(good), pytest.raises(TargetError, match="out of range"):
        ak.explain(good, vit_images(2), 99, method=method)
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_per_image(method):
    model, x = torchvision_vit(), vit_images(3)
    whole = ak.explain(model, x, TARGETS, method=method).values
    single = torch.cat([ak.explain(model, x[i:i + 1], TARGETS[i], method=method).values
                        for i in range(len(x))])
    torch.testing.assert_close(whole, single, rtol=1e-4, atol=1e-6)
    chunked = ak.explain(model, x, TARGETS, method=method, batch_size=2).values
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-6)


def test_threads_on_one_model_give_the_serial_results():
    model, x = timm_vit(), vit_images(2)
    serial = {m: ak.explain(model, x, method=m).values for m in METHODS}
    barrier, results, errors = threading.Barrier(3), [], []

    def work(method):
        barrier.wait()
        try:
            for _ in range(3):
                results.append((method, ak.explain(model, x, method=method).values))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in METHODS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, repr(errors[0])
    assert all(torch.allclose(v, serial[m], rtol=1e-6, atol=1e-7) for m, v in results)


def test_clear_errors():
    from attribkit.testing import TinyCNN

    with pytest.raises(LayerError, match="made neither; they explain ViT"):
        ak.explain(TinyCNN().eval(), torch.randn(2, 3, 12, 12), method="attention_rollout")
    with pytest.raises(LayerError, match="WindowAttention modules compute attention by hand"):
        ak.explain(timm_swin(), vit_images(1, 64), method="raw_attention")
    with pytest.raises(LayerError, match=r"global self-attention over the 2 prefix.*\[\(17, 17\)\]"):
        ak.explain(timm_vit(), vit_images(1), method="raw_attention", prefix_tokens=2, grid=(4, 4))
    with pytest.raises(LayerError, match="no prefix token"):
        ak.explain(timm_vit(class_token=False, global_pool="avg"), vit_images(1), method="generic_attention")
    with pytest.raises(InvalidOptionError, match="head_fusion"):
        ak.explain(timm_vit(), vit_images(1), method="attention_rollout", head_fusion="median")
    with pytest.raises(InvalidOptionError, match="discard_ratio"):
        ak.explain(timm_vit(), vit_images(1), method="attention_rollout", discard_ratio=1.0)
    with pytest.raises(InvalidOptionError, match="takes no layer") as info:
        ak.explain(timm_vit(), vit_images(1), method="raw_attention", layer="blocks.1")
    assert "patch tokens" in str(info.value) and "attributes to the inputs" not in str(info.value)


def test_registered_with_aliases_and_prefix_override():
    assert ak.get_method("chefer2021").name == "generic_attention"
    assert {s.name for s in ak.methods() if s.family == "attention"} == set(METHODS)
    model, x = timm_vit(), vit_images(2)
    torch.testing.assert_close(ak.explain(model, x, method="attention_rollout").values,
                               ak.explain(model, x, method="attention_rollout", prefix_tokens=1,
                                          grid=(4, 4)).values)
    assert ak.explain(model, x, method="raw_attention").upsampled().shape == (2, 1, 32, 32)


@pytest.mark.parametrize("method", METHODS)
def test_a_vit_as_users_have_it(method):
    """Training mode, a frozen patch embedding and classifier, a stale ``.grad``, a user
    hook: all as it was afterwards; generic attention needs no parameter gradient."""
    model = timm_vit().train()
    for p in [*model.patch_embed.parameters(), *model.head.parameters()]:
        p.requires_grad_(False)
    model.blocks[0].attn.qkv.weight.grad = torch.ones_like(model.blocks[0].attn.qkv.weight)
    model.blocks[1].register_forward_hook(lambda m, a, o: None)
    x = vit_images(2)
    with assert_model_untouched(model):
        got = ak.explain(model, x, [0, 1], method=method).values
    model.requires_grad_(False)
    with assert_model_untouched(model):
        frozen = ak.explain(model, x, [0, 1], method=method).values
    torch.testing.assert_close(frozen, got)
    assert model.training and got.abs().sum() > 0

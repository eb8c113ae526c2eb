"""Any model as ``predict(batch) -> scores``: what black-box methods and metrics need.

Perturbation methods (occlusion, RISE) and the forward-only faithfulness
metrics never look inside a model; they only call it on batches. :func:`as_predict`
turns each kind of model users have into the same :class:`Predict` callable:

- a ``torch.nn.Module``: called under ``torch.no_grad()`` on the device of its
  parameters;
- an ``onnxruntime.InferenceSession`` (``pip install 'attribkit[onnx]'``):
  fed NumPy arrays of the dtype its input declares;
- any other callable ``np.ndarray -> array-like scores`` (JAX, TensorFlow, a
  remote endpoint), or ``torch.Tensor -> scores`` with ``array="torch"``.

A :class:`Predict` accepts torch tensors or NumPy arrays and answers in the
same kind, ``(B, ...)`` scores for a ``(B, ...)`` batch, calling the model on
chunks of at most ``batch_size`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attribkit.errors import InputError, InvalidOptionError

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(float16)": np.float16}


def is_onnx_session(model: Any) -> bool:
    """Duck-typed check for an ``onnxruntime.InferenceSession`` (no import needed)."""
    return callable(getattr(model, "run", None)) and callable(getattr(model, "get_inputs", None))


class Predict:
    """A model seen as ``predict(batch) -> scores``; build one with :func:`as_predict`.

    Attributes:
        backend: ``"torch"``, ``"onnxruntime"`` or ``"callable"``.
        module: the ``nn.Module`` when ``backend == "torch"`` (for the model
            guard), else ``None``.
        batch_size: rows per model call (``None``: the whole batch at once).
        model_layout: the layout the model itself takes, ``"NCHW"`` or (a JAX/Keras model
            behind a framework backend) ``"NHWC"``; a Predict always takes channel-first
            batches and converts.
    """

    model_layout = "NCHW"

    def __init__(self, call: Callable[[Any], Any], *, backend: str, accepts: str,
                 module: torch.nn.Module | None = None, batch_size: int | None = None,
                 description: str = "") -> None:
        self._call = call
        self.backend = backend
        self.accepts = accepts  # "torch" or "numpy": what ``call`` takes and gives
        self.module = module
        self.batch_size = _check_batch_size(batch_size)
        self.description = description

    def __repr__(self) -> str:
        return f"Predict({self.description or self.backend}, batch_size={self.batch_size})"

    def __call__(self, batch: Any) -> Any:
        """Scores for every row of ``batch``, of the same kind as ``batch``
        (torch tensor on ``batch``'s device, or NumPy array)."""
        as_numpy = isinstance(batch, np.ndarray)
        x = torch.from_numpy(batch) if as_numpy else batch
        if not isinstance(x, torch.Tensor):
            raise InputError(f"predict takes a torch.Tensor or np.ndarray batch, got {type(batch).__name__}")
        if x.ndim < 1 or len(x) == 0:
            raise InputError(f"predict needs a non-empty batch (B, ...), got shape {tuple(x.shape)}")
        step = self.batch_size or len(x)
        outs = [self._chunk(x[i:i + step]) for i in range(0, len(x), step)]
        scores = merge_outputs(outs) if len(outs) > 1 else outs[0]
        if not isinstance(scores, torch.Tensor):  # a raw output (dict, list of dicts): targets read it
            return scores
        if as_numpy:
            return scores.cpu().numpy()
        return scores.to(x.device)

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        if self.accepts == "numpy":
            try:
                out = torch.as_tensor(np.asarray(self._call(x.detach().cpu().numpy())))
            except TypeError as exc:
                if self.backend != "callable":
                    raise
                raise InputError(
                    f"{self.description} failed on a NumPy batch ({exc}); plain callables get NumPy "
                    "arrays. Pass a torch.nn.Module itself, or wrap a callable that takes tensors: "
                    "ak.as_predict(fn, array='torch')"
                ) from exc
        else:
            with torch.no_grad():
                out = self._call(x)
            if not isinstance(out, torch.Tensor):
                return check_raw_rows(out, len(x))
            out = out.detach()
        if out.ndim < 1 or out.shape[0] != len(x):
            raise InputError(
                f"the model returned scores of shape {tuple(out.shape)} for a batch of {len(x)}; "
                "predict must give one row of scores per input row"
            )
        return out

    def with_batch_size(self, batch_size: int | None) -> Predict:
        """The same model called in chunks of ``batch_size`` rows."""
        return Predict(self._call, backend=self.backend, accepts=self.accepts, module=self.module,
                       batch_size=batch_size, description=self.description)


def check_raw_rows(output: Any, n: int) -> Any:
    """A raw output that is not one tensor (a dict of tensors, a list of per-image dicts,
    a tuple, a Hugging Face output), checked to hold ``n`` rows; target objects read it
    (:mod:`attribkit.targets`)."""
    if isinstance(output, (list, tuple)) and output and not isinstance(output[0], torch.Tensor):
        rows = len(output)
    else:
        tensors = list(output.values()) if hasattr(output, "values") else list(output) \
            if isinstance(output, (list, tuple)) else []
        firsts = {t.shape[0] for t in tensors if isinstance(t, torch.Tensor) and t.ndim}
        if not tensors or not firsts:
            raise InputError(f"the model returned {type(output).__name__}, neither a tensor of scores "
                             "nor a dict, list or tuple of them")
        rows = n if n in firsts else min(firsts)
    if rows != n:
        raise InputError(f"the model returned {rows} rows for a batch of {n}; predict must give one "
                         "row per input row")
    return output


def merge_outputs(outs: list[Any]) -> Any:
    """The outputs of consecutive chunks as one: tensors concatenated; lists of per-image
    results joined; dicts, tuples and Hugging Face outputs merged entry by entry."""
    first = outs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outs)
    if isinstance(first, list):
        return [row for out in outs for row in out]
    if isinstance(first, tuple) and first and not isinstance(first[0], torch.Tensor):
        return tuple(row for out in outs for row in out)
    if isinstance(first, tuple):
        return type(first)(merge_outputs([out[i] for out in outs]) for i in range(len(first)))
    if hasattr(first, "keys"):
        merged = {k: merge_outputs([out[k] for out in outs]) if isinstance(first[k], torch.Tensor)
                  else first[k] for k in first.keys()}
        return type(first)(**merged) if type(first) is not dict else merged
    raise InputError(f"cannot join the model's outputs of type {type(first).__name__} over chunks; "
                     "pass batch_size=None")


def as_predict(model: Any, *, batch_size: int | None = None, input_name: str | None = None,
               output: int = 0, array: str = "numpy") -> Predict:
    """Wrap ``model`` as a :class:`Predict` (see the module docstring for the kinds).

    Args:
        model: an ``nn.Module``, an ``onnxruntime.InferenceSession``, a callable,
            or a :class:`Predict` (returned as is, or re-chunked).
        batch_size: call the model on at most this many rows at a time.
        input_name: for ONNX sessions with several inputs, the image input.
        output: for ONNX sessions, the index of the scores among the outputs.
        array: for plain callables, ``"numpy"`` (the default: the callable
            takes and returns arrays) or ``"torch"`` (tensors).
    """
    if isinstance(model, Predict):
        return model if batch_size is None else model.with_batch_size(batch_size)
    backend = _framework_backend(model)  # first: a Keras model on Keras' torch backend is an nn.Module too
    if isinstance(model, torch.nn.Module) and backend is None:
        return Predict(_module_call(model), backend="torch", accepts="torch", module=model,
                       batch_size=batch_size, description=type(model).__name__)
    if backend is not None:  # JAX/Flax, Keras 3: channel-first batches in, as every Predict
        from attribkit.backends.run import framework_predict, wrap

        fm = wrap(backend, model, {})
        predict = Predict(framework_predict(fm), backend=fm.framework, accepts="numpy", batch_size=batch_size,
                          description=f"{fm.framework} {type(model).__name__}")
        predict.model_layout = fm.layout
        return predict
    if is_onnx_session(model):
        return _onnx_predict(model, batch_size=batch_size, input_name=input_name, output=output)
    if callable(model):
        if array not in ("numpy", "torch"):
            raise InvalidOptionError(f"array must be 'numpy' or 'torch', got {array!r}")
        name = getattr(model, "__name__", type(model).__name__)
        return Predict(model, backend="callable", accepts=array, batch_size=batch_size,
                       description=f"callable {name}")
    raise InputError(
        f"cannot use a {type(model).__name__} as a model: pass a torch.nn.Module, an "
        "onnxruntime.InferenceSession or a callable batch -> scores"
    )


def _framework_backend(model: Any) -> Any:
    """The backend that claims ``model`` (attribkit.backends), else ``None``."""
    from attribkit.host import get_host

    return get_host().backends.claiming(model)


def _module_call(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def call(x: torch.Tensor) -> torch.Tensor:
        param = next(model.parameters(), None)
        if param is not None and param.device != x.device:
            x = x.to(param.device)
        return model(x)

    return call


def _onnx_predict(session: Any, *, batch_size: int | None, input_name: str | None,
                  output: int) -> Predict:
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    if input_name is None:
        if len(inputs) != 1:
            raise InputError(f"the ONNX model has inputs {names}; say which is the image with input_name=")
        spec = inputs[0]
    elif input_name in names:
        spec = inputs[names.index(input_name)]
    else:
        raise InputError(f"the ONNX model has no input {input_name!r}; its inputs are {names}")
    dtype = ONNX_DTYPES.get(spec.type)
    if dtype is None:
        raise InputError(f"ONNX input {spec.name!r} has type {spec.type}; attribkit needs a float input")
    n_outputs = len(session.get_outputs())
    if not 0 <= output < n_outputs:
        raise InvalidOptionError(f"output={output} but the ONNX model has {n_outputs} output(s)")

    def call(x: np.ndarray) -> np.ndarray:
        return session.run(None, {spec.name: np.ascontiguousarray(x, dtype=dtype)})[output]

    return Predict(call, backend="onnxruntime", accepts="numpy", batch_size=batch_size,
                   description=f"onnxruntime input {spec.name!r}")


def _check_batch_size(batch_size: Any) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidOptionError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return batch_size

"""Run a small feed-forward ONNX graph with torch, so it can use the GPU.

DNSMOS ships as ONNX; onnxruntime on a GPU box is often the CPU-only wheel, where DNSMOS costs about
0.6 core-seconds per 9 s window and would cap full scoring far below the GPU's pace. Its graphs use
a handful of standard ops (convolutions, pooling, matmuls, elementwise math), so this module
interprets them with torch functions: weights become tensors on the device, nodes run in their
topological order. Only the ops those graphs need are implemented; anything else raises at load
time (`UnsupportedOnnxOp`), never silently. Outputs match onnxruntime to ~1e-5 (unit test).
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


class UnsupportedOnnxOp(RuntimeError):
    pass


SUPPORTED = {"Conv", "Relu", "Transpose", "Add", "Mul", "Div", "Sub", "MaxPool", "MatMul", "Slice", "Reshape",
             "Concat", "Sqrt", "Pow", "Max", "Log", "Unsqueeze", "ReduceMax", "ReduceMean", "Identity"}

#: one graph node: (op type, input names, output names, attributes)
Node = tuple[str, list[str], list[str], dict[str, Any]]


def load_graph(path: str | Path) -> tuple[list[Node], dict[str, np.ndarray], list[str], list[str]]:
    """(nodes, initializers, input names, output names) from an ONNX file."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        from audiosubnet.errors import DependencyError

        raise DependencyError("onnx", "scoring", "running DNSMOS with torch") from e
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes: list[Node] = []
    for n in model.graph.node:
        if n.op_type not in SUPPORTED:
            raise UnsupportedOnnxOp(f"{Path(path).name}: op {n.op_type} is not supported")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        nodes.append((n.op_type, list(n.input), list(n.output), attrs))
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    outputs = [o.name for o in model.graph.output]
    return nodes, inits, inputs, outputs


def build_module(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """A torch.nn.Module running the ONNX graph at `path` (float32)."""
    import torch
    import torch.nn.functional as F

    nodes, inits, inputs, outputs = load_graph(path)

    class OnnxGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.consts: dict[str, Any] = {}  # integer tensors used as shapes/indices stay numpy
            self.names: dict[str, str] = {}
            for i, (name, arr) in enumerate(inits.items()):
                if arr.dtype.kind in "iu":
                    self.consts[name] = arr
                else:
                    key = f"w{i}"
                    self.register_buffer(key, torch.from_numpy(np.array(arr, dtype=np.float32)))
                    self.names[name] = key

        def value(self, env: dict[str, Any], name: str) -> Any:  # a tensor, or a numpy array of ints
            if name in env:
                return env[name]
            if name in self.names:
                return getattr(self, self.names[name])
            return self.consts[name]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            env: dict[str, Any] = {inputs[0]: x}
            for op, ins, outs, attrs in nodes:
                args = [self.value(env, n) if n else None for n in ins]
                env[outs[0]] = _run(op, args, attrs, torch, F)
            out: torch.Tensor = env[outputs[0]]
            return out

    return OnnxGraph().to(device).eval()


def _ints(v: Any) -> list[int]:
    return [int(t) for t in np.asarray(v).reshape(-1)]


def _run(op: str, a: list[Any], attrs: dict[str, Any], torch: types.ModuleType,  # noqa: C901 (one branch per op)
         F: types.ModuleType) -> Any:
    if op == "Conv":
        x, w, b = a[0], a[1], a[2] if len(a) > 2 else None
        nd = w.dim() - 2
        pads = attrs.get("pads", [0] * 2 * nd)
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise UnsupportedOnnxOp(f"Conv auto_pad={attrs['auto_pad']}")
        if attrs.get("auto_pad") == "VALID":
            pads = [0] * 2 * nd
        if any(pads[i] != pads[i + nd] for i in range(nd)):
            x = F.pad(x, [p for i in reversed(range(nd)) for p in (pads[i], pads[i + nd])])
            pads = [0] * 2 * nd
        conv = F.conv1d if nd == 1 else F.conv2d
        return conv(x, w, b, stride=attrs.get("strides", [1] * nd), padding=pads[:nd],
                    dilation=attrs.get("dilations", [1] * nd), groups=attrs.get("group", 1))
    if op == "MaxPool":
        k = attrs["kernel_shape"]
        pads = attrs.get("pads", [0] * 2 * len(k))
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or any(pads):
            raise UnsupportedOnnxOp("MaxPool with padding")
        return F.max_pool2d(a[0], k, attrs.get("strides", k), ceil_mode=bool(attrs.get("ceil_mode", 0)))
    if op == "Relu":
        return torch.relu(a[0])
    if op == "Identity":
        return a[0]
    if op in ("Add", "Mul", "Div", "Sub", "Pow", "Max"):
        x, y = (torch.as_tensor(v, dtype=torch.float32, device=_dev(a)) if isinstance(v, np.ndarray) else v
                for v in a[:2])
        return {"Add": torch.add, "Mul": torch.mul, "Div": torch.div, "Sub": torch.sub, "Pow": torch.pow,
                "Max": torch.maximum}[op](x, y)
    if op == "Sqrt":
        return torch.sqrt(a[0])
    if op == "Log":
        return torch.log(a[0])
    if op == "MatMul":
        return torch.matmul(a[0], a[1])
    if op == "Transpose":
        return a[0].permute(*attrs["perm"])
    if op == "Unsqueeze":
        x = a[0]
        for ax in sorted(attrs.get("axes") or _ints(a[1])):
            x = x.unsqueeze(ax)
        return x
    if op == "Concat":
        return torch.cat(a, dim=attrs["axis"])
    if op in ("ReduceMax", "ReduceMean"):
        axes = attrs.get("axes") or (_ints(a[1]) if len(a) > 1 and a[1] is not None else None)
        keep = bool(attrs.get("keepdims", 1))
        dims = tuple(axes) if axes else tuple(range(a[0].dim()))
        return torch.amax(a[0], dim=dims, keepdim=keep) if op == "ReduceMax" else a[0].mean(dim=dims, keepdim=keep)
    if op == "Reshape":
        x, shape = a[0], _ints(a[1])
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return x.reshape(shape)
    if op == "Slice":
        x = a[0]
        starts, ends = _ints(a[1]), _ints(a[2])
        axes = _ints(a[3]) if len(a) > 3 and a[3] is not None else list(range(len(starts)))
        steps = _ints(a[4]) if len(a) > 4 and a[4] is not None else [1] * len(starts)
        idx = [slice(None)] * x.dim()
        for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
            n = x.shape[ax]
            idx[ax] = slice(max(-n, min(s, n)), max(-n - 1, min(e, n)), st)
        return x[tuple(idx)]
    raise UnsupportedOnnxOp(op)


def _dev(a: list[Any]) -> Any:  # a torch.device, or "cpu"
    for v in a:
        if hasattr(v, "device"):
            return v.device
    return "cpu"

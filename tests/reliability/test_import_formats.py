"""Checkpoints as people have them: each built here from a real ``nn.Module`` in its own layout, saved the
way its ecosystem saves it, imported, and then analysed (top-5 Hessian eigenvalues, a 2-D surface).

The imported model must give the original's logits (max abs diff <= 1e-5: the same float32 operations in
the same order, so differences are at most a few ulps), and its Hessian spectrum must be the original
module's (a wrong mapping, e.g. two BatchNorm layers swapped, changes logits and eigenvalues by O(1)).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from foreign_models import (
    FC3,
    CifarResNet20,
    HFClassifier,
    LightningLike,
    TinyTransformer,
    onnx_bytes,
    randomise_batchnorm,
    sequential_mlp,
)
from rel_helpers import state_bytes_pt, state_bytes_safetensors, tree_listing

from landscape_core.analyses.hessian import analyze_hessian
from landscape_core.analyses.surface import compute_surface
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator
from landscape_core.lanczos import lanczos
from landscape_core.runs import list_runs, load_run
from landscape_core.uploads import ImportReport, UploadError, import_checkpoint, import_report

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::FutureWarning")


def _seeded(fn, seed=0):
    torch.manual_seed(seed)
    return fn().eval()


def _image_npz(n: int = 24, shape=(3, 8, 8), classes: int = 10, seed: int = 0) -> bytes:
    g = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez(buf, X=g.normal(size=(n, *shape)).astype(np.float32), y=g.integers(0, classes, n))
    return buf.getvalue()


def _lightning_ckpt(model: torch.nn.Module) -> bytes:
    """A dict shaped like Lightning's .ckpt (plain types and tensors only, as weights-only loading needs)."""
    sd = model.state_dict()
    ckpt = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": dict(sd),
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
            "best_model_score": torch.tensor(0.42), "best_model_path": "/ckpts/epoch=3.ckpt"}},
        "optimizer_states": [{"state": {i: {"momentum_buffer": torch.zeros_like(p)}
                                        for i, p in enumerate(model.parameters())},
                              "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": list(range(6))}]}],
        "lr_schedulers": [{"last_epoch": 3, "_step_count": 4}],
        "hyper_parameters": {"width": 10, "lr": 0.1, "optimizer": "sgd"},
    }
    return state_bytes_pt(ckpt)


def _case(name: str):
    """``(filename, bytes, original module, import kwargs, expected architecture, expected format words)``."""
    if name == "sequential-mlp":
        m = _seeded(sequential_mlp)
        return "mlp.pt", state_bytes_pt(m.state_dict()), m, {}, "mlp", "PyTorch state dict"
    if name == "fc3-safetensors":
        m = _seeded(FC3, 1)
        return "fc3.safetensors", state_bytes_safetensors(m.state_dict()), m, {"activation": "tanh"}, "mlp", "safetensors"
    if name == "lightning-ckpt":
        m = _seeded(LightningLike, 2)
        return "epoch=3-step=120.ckpt", _lightning_ckpt(m), m, {}, "mlp", "Lightning"
    if name == "dataparallel-th":
        m = _seeded(sequential_mlp, 3)
        sd = torch.nn.DataParallel(m).state_dict()
        assert all(k.startswith("module.") for k in sd)
        return "model_best.th", state_bytes_pt(sd), m, {}, "mlp", "prefix 'module.'"
    if name == "hf-bin":
        m = _seeded(HFClassifier, 4)
        return "pytorch_model.bin", state_bytes_pt(m.state_dict()), m, {"activation": "gelu"}, "mlp", "PyTorch"
    data = {"user_data": _image_npz(), "user_data_name": "cifar-like.npz"}
    if name == "resnet20-fc-downsample":
        m = randomise_batchnorm(_seeded(lambda: CifarResNet20(option="B", head="fc", proj_name="downsample"), 5))
        return "resnet20.pth", state_bytes_pt(m.state_dict()), m, data, "resnet20", "PyTorch"
    if name == "resnet20-fc-shortcut":
        m = randomise_batchnorm(_seeded(lambda: CifarResNet20(option="B", head="fc", proj_name="shortcut"), 6))
        return "resnet20-b.pt", state_bytes_pt(m.state_dict()), m, data, "resnet20", "PyTorch"
    if name == "resnet20-optionA-linear":
        m = randomise_batchnorm(_seeded(lambda: CifarResNet20(option="A", head="linear"), 7))
        return "resnet20-a.th", state_bytes_pt({"state_dict": m.state_dict(), "best_prec1": 91.7}), m, data, \
            "resnet20", "weights under 'state_dict'"
    raise KeyError(name)


CASES = ["sequential-mlp", "fc3-safetensors", "lightning-ckpt", "dataparallel-th", "hf-bin",
         "resnet20-fc-downsample", "resnet20-fc-shortcut", "resnet20-optionA-linear"]


def _top5(op) -> np.ndarray:
    return np.asarray(lanczos(op, 5, tol=1e-6, seed=0).eigenvalues)


@pytest.mark.parametrize("case", CASES)
def test_import_and_analyse_foreign_checkpoint(workspace, case):
    fname, data, original, kw, arch, fmt_words = _case(case)
    rep = import_checkpoint(fname, data, workspace=workspace, **kw)
    assert rep.architecture == arch and fmt_words in rep.format, rep.format
    assert rep.renamed and rep.n_params == sum(p.numel() for p in original.parameters())
    assert len(rep.mapping) == len(original.state_dict())  # every tensor, BN buffers included, mapped once
    assert len({r.model_key for r in rep.mapping}) == len({r.file_key for r in rep.mapping}) == len(rep.mapping)
    assert ImportReport.from_dict(json.loads(json.dumps(rep.to_dict()))) == rep
    assert import_report(rep.path).mapping == rep.mapping

    run = load_run(rep.path)
    X, y = run.train_data
    with torch.no_grad():
        diff = (run.model(X) - original(X)).abs().max().item()
    assert diff <= 1e-5, diff

    # top-5 Hessian eigenvalues of the imported run = those of the original module on the same data.
    # Both are float32 HVPs (~1e-6 relative rounding) and Lanczos to a 1e-6 relative residual, so they agree
    # to ~1e-5 relative; rtol 1e-3 is loose, a wrong mapping moves them by O(1).
    res = analyze_hessian(run, top_k=5, trace=False, smallest=False, samples=None)
    ref = _top5(hessian_operator(LossFunction(original, X, y, batch_size=1024)))
    np.testing.assert_allclose(sorted(res.eigenvalues, reverse=True), sorted(ref, reverse=True),
                               rtol=1e-3, atol=1e-6 * abs(ref).max())
    surf = compute_surface(run, dims=2, grid=5, samples=None, use_cache=False).surface
    assert surf.loss.shape == (5, 5) and np.isfinite(surf.loss).all()
    with torch.no_grad():
        ref_loss = torch.nn.functional.cross_entropy(original(X), y).item()
    assert surf.center_loss == pytest.approx(ref_loss, rel=1e-5)  # float32 mean over <= 1347 examples


def test_user_data_is_stored_with_the_run_and_hash_checked(workspace):
    fname, data, original, kw, _, _ = _case("resnet20-optionA-linear")
    rep = import_checkpoint(fname, data, workspace=workspace, **kw)
    assert rep.dataset["name"] == "user" and "cifar-like.npz" in rep.data and "18 train + 6 test" in rep.data
    run = load_run(rep.path)
    assert (run.path / "data.npz").is_file() and tuple(run.data.input_shape) == (3, 8, 8)
    g = np.random.default_rng(0)
    X = g.normal(size=(24, 3, 8, 8)).astype(np.float32)
    both = np.concatenate([run.train_data[0].numpy(), run.test_data[0].numpy()])
    assert sorted(map(bytes, both)) == sorted(map(bytes, X))  # the same examples, split 18/6
    with np.load(run.path / "data.npz") as z:
        arrays = dict(z)
    arrays["X_train"][0, 0, 0, 0] += 1.0
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (run.path / "data.npz").write_bytes(buf.getvalue())
    from landscape_core.runs import RunError

    with pytest.raises(RunError, match="does not match the SHA-256"):
        load_run(rep.path)


def test_option_a_resnet_has_no_shortcut_parameters_and_matches_projection_count():
    from landscape_core.models import build_model, model_spec

    a = build_model(model_spec("resnet20", (3, 8, 8), 10, width=4, shortcut="zeropad"), seed=0)
    b = build_model(model_spec("resnet20", (3, 8, 8), 10, width=4), seed=0)
    assert not any("shortcut" in k for k in a.state_dict())
    extra = sum(v.numel() for k, v in b.named_parameters() if "shortcut" in k)
    assert sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters()) == extra > 0
    # the zero-padding shortcut: even pixels, new channels zero, old channels in the middle
    x = torch.randn(2, 4, 8, 8)
    s = a.layers[3].shortcut(x)
    assert s.shape == (2, 8, 4, 4) and torch.equal(s[:, 2:6], x[:, :, ::2, ::2])
    assert not s[:, :2].any() and not s[:, 6:].any()
    with pytest.raises(ValueError, match="unknown shortcut"):
        build_model(model_spec("resnet20", (3, 8, 8), 10, shortcut="C"))


# ---------------------------------------------------------------- ONNX: any architecture
def test_onnx_transformer_outside_the_registry(workspace):
    torch.manual_seed(0)
    original = TinyTransformer().eval()
    with torch.no_grad():  # LayerNorm starts at ones/zeros: make every parameter distinct (and non-trivial)
        for p in original.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    g = np.random.default_rng(1)
    X = g.normal(size=(16, 5, 4)).astype(np.float32)
    y = g.integers(0, 3, 16)
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    rep = import_checkpoint("tiny-transformer.onnx", onnx_bytes(original, torch.zeros(2, 5, 4)), workspace=workspace,
                            user_data=buf.getvalue(), user_data_name="seqs.npz")
    assert rep.architecture == "onnx" and rep.kind == "onnx"
    # every weight of the original is a parameter of the import (onnx2torch keeps many as buffers)
    assert rep.n_params == sum(p.numel() for p in original.parameters())
    run = load_run(rep.path)
    assert (run.path / "model.onnx").is_file()
    Xt = torch.from_numpy(X)
    with torch.no_grad():
        assert (run.model(Xt) - original(Xt)).abs().max().item() <= 1e-5
    Xtr, ytr = run.train_data
    # HVPs: every original parameter is one parameter of the graph (same values, Gemm weights as they are,
    # MatMul weights transposed), so a vector on the original's parameters maps onto the graph's, and the
    # graph's Hessian-vector product (double backward through every converted op) must be the original's.
    # Both are float32 HVPs of the same arithmetic: agreement to ~1e-6 relative; rtol 1e-4.
    lf_imp = LossFunction(run.model, Xtr, ytr)
    lf_orig = LossFunction(original, Xtr, ytr)
    where = _correspondence(lf_orig.params0, lf_imp.params0)
    g = torch.Generator().manual_seed(0)
    v = {k: torch.randn(p.shape, generator=g) for k, p in lf_orig.params0.items()}
    v_imp = {where[k][0]: (t.T if where[k][1] else t) for k, t in v.items()}
    op_o, op_i = hessian_operator(lf_orig, mode="rev_rev"), hessian_operator(lf_imp)
    hv_o = op_o._unflatten(op_o.matvec(torch.cat([v[k].reshape(-1) for k in op_o.names])))
    hv_i = op_i._unflatten(op_i.matvec(torch.cat([v_imp[k].reshape(-1) for k in op_i.names])))
    scale = max(float(t.abs().max()) for t in hv_o.values())
    for k, (ki, tr) in where.items():
        got = hv_i[ki].T if tr else hv_i[ki]
        np.testing.assert_allclose(got.numpy(), hv_o[k].numpy(), rtol=1e-4, atol=1e-5 * scale, err_msg=k)
    # and the run-level analysis: top-5 eigenvalues of the import = Lanczos on the original's HVPs
    ref = _top5(op_o)
    res = analyze_hessian(run, top_k=5, trace=False, smallest=False, samples=None)
    np.testing.assert_allclose(sorted(res.eigenvalues, reverse=True), sorted(ref, reverse=True), rtol=1e-3,
                               atol=1e-6 * abs(ref).max())


def test_onnx_transformer_surface(workspace):
    torch.manual_seed(0)
    original = TinyTransformer().eval()
    g = np.random.default_rng(1)
    buf = io.BytesIO()
    np.savez(buf, X=g.normal(size=(16, 5, 4)).astype(np.float32), y=g.integers(0, 3, 16))
    rep = import_checkpoint("t.onnx", onnx_bytes(original, torch.zeros(2, 5, 4)), workspace=workspace,
                            user_data=buf.getvalue())
    run = load_run(rep.path)
    res = compute_surface(run, dims=2, grid=5, samples=None, use_cache=False)
    Xtr, ytr = run.train_data
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(original(Xtr), ytr).item()
    assert np.isfinite(res.surface.loss).all() and res.surface.center_loss == pytest.approx(ref, rel=1e-5)


def _correspondence(orig: dict, imp: dict) -> dict[str, tuple[str, bool]]:
    """Original parameter name -> (graph parameter name, transposed?), found by equal values (one each)."""
    out, used = {}, set()
    for k, t in orig.items():
        hits = [(ki, tr) for ki, ti in imp.items() if ki not in used
                for tr in (False, True) if (ti.T if tr and ti.ndim == 2 else ti).shape == t.shape
                and torch.equal(ti.T if tr and ti.ndim == 2 else ti, t) and (not tr or ti.ndim == 2)]
        assert len(hits) >= 1, f"no graph parameter holds {k}"
        out[k] = hits[0]
        used.add(hits[0][0])
    assert len(used) == len(imp), "the graph has parameters that are not the original's"
    return out


# ---------------------------------------------------------------- refusals: ambiguous / partial / hostile
def _refused(tmp_path, workspace, fn, match):
    before = tree_listing(tmp_path)
    with pytest.raises(UploadError, match=match) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert tree_listing(tmp_path) == before
    assert list_runs(workspace, include_shipped=False) == []
    return msg


def test_partial_match_names_the_first_unmatched_key(tmp_path, workspace):
    m = _seeded(lambda: CifarResNet20(option="B", head="fc"))
    sd = dict(m.state_dict())
    sd.pop("layer2.0.bn2.running_var")  # a BN without its statistics is not a BatchNorm layer
    msg = _refused(tmp_path, workspace, lambda: import_checkpoint(
        "r.pt", state_bytes_pt(sd), workspace=workspace, user_data=_image_npz()), "layer2.0.bn2")
    assert "cannot match" in msg
    sd = dict(m.state_dict())
    sd["layer3.2.conv2.weight"] = torch.zeros(16, 16, 1, 1)  # a 1x1 conv where the model has a 3x3 one
    msg = _refused(tmp_path, workspace, lambda: import_checkpoint(
        "r.pt", state_bytes_pt(sd), workspace=workspace, user_data=_image_npz()), "first unmatched key")
    assert "layer3.2.conv2.weight" in msg
    extra = {**m.state_dict(), "aux.weight": torch.zeros(3, 64)}  # an auxiliary head
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "r.pt", state_bytes_pt(extra), workspace=workspace, user_data=_image_npz()), "no registry architecture")


def test_ambiguous_layer_order_is_refused(tmp_path, workspace):
    class Unnumbered(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.inner, self.out = (torch.nn.Linear(64, 64), torch.nn.Linear(64, 64),
                                                 torch.nn.Linear(64, 10))

    sd = _seeded(Unnumbered).state_dict()
    msg = _refused(tmp_path, workspace, lambda: import_checkpoint("u.pt", state_bytes_pt(sd), workspace=workspace),
                   "ambiguous layer order")
    assert "'hidden'" in msg and "'inner'" in msg

    class Chain(torch.nn.Module):  # unnumbered, but the shapes leave exactly one order: accepted
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.out = torch.nn.Linear(64, 20), torch.nn.Linear(20, 10)

    rep = import_checkpoint("c.pt", state_bytes_pt(_seeded(Chain).state_dict()), workspace=workspace)
    assert [(r.file_key, r.model_key) for r in rep.mapping][:2] == [("hidden.weight", "net.1.weight"),
                                                                   ("hidden.bias", "net.1.bias")]


def test_data_that_does_not_fit_the_model_is_one_line(tmp_path, workspace):
    m = _seeded(sequential_mlp)
    buf = io.BytesIO()
    np.savez(buf, X=np.zeros((10, 5), np.float32), y=np.zeros(10, np.int64))
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.pt", state_bytes_pt(m.state_dict()), workspace=workspace, user_data=buf.getvalue(),
        user_data_name="five.npz"), r"data 'five.npz' has examples of shape \(5,\), but the model takes 64 input")
    buf = io.BytesIO()
    np.savez(buf, X=np.zeros((10, 64), np.float32), y=np.full(10, 12))
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.pt", state_bytes_pt(m.state_dict()), workspace=workspace, user_data=buf.getvalue()),
        "labels go up to 12, but the model has 10 outputs")
    buf = io.BytesIO()
    np.savez(buf, X=np.array([object()] * 4, dtype=object), y=np.zeros(4))
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.pt", state_bytes_pt(m.state_dict()), workspace=workspace, user_data=buf.getvalue()), "object arrays")
    csv = b"a,b,label\n" + b"".join(b"0.5,1.5,1\n" for _ in range(4))
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.pt", state_bytes_pt(m.state_dict()), workspace=workspace, user_data=csv, user_data_name="t.csv"),
        r"data 't.csv' has examples of shape \(2,\)")
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.pt", state_bytes_pt(m.state_dict()), workspace=workspace, user_data=csv, user_data_name="t.csv",
        label_column="target"), "no label column 'target'")


def test_csv_data_with_a_named_label_column(workspace):
    m = _seeded(lambda: sequential_mlp(d_in=3, width=6, classes=2))
    g = np.random.default_rng(0)
    rows = ["x1,cls,x2,x3"] + [f"{a:.4f},{int(c)},{b:.4f},{d:.4f}" for a, b, d, c in
                               zip(*g.normal(size=(3, 12)), g.integers(0, 2, 12))]
    rep = import_checkpoint("m.pt", state_bytes_pt(m.state_dict()), workspace=workspace,
                            user_data="\n".join(rows).encode(), user_data_name="table.csv", label_column="cls")
    run = load_run(rep.path)
    assert tuple(run.data.input_shape) == (3,) and len(run.train_data[1]) + len(run.test_data[1]) == 12
    with torch.no_grad():
        assert (run.model(run.test_data[0]) - m(run.test_data[0])).abs().max() <= 1e-5


class _WritesMarker:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _hostile_pt2(marker) -> bytes:
    """A real torch.export archive whose weight is switched to the pickled form, with a payload instead."""
    ep = torch.export.export(torch.nn.Linear(3, 2), (torch.randn(1, 3),))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            blob = src.read(info.filename)
            if info.filename.endswith("weights/model_weights_config.json"):
                cfg = json.loads(blob)
                cfg["config"]["weight"]["use_pickle"] = True
                blob = json.dumps(cfg).encode()
            elif info.filename.endswith("weights/weight_0"):
                blob = state_bytes_pt(_WritesMarker(marker))
            dst.writestr(info, blob)
    return out.getvalue()


def test_hostile_torch_export_archive_is_refused_and_its_code_never_runs(tmp_path, workspace):
    marker = tmp_path / "PWNED"
    data = _hostile_pt2(marker)
    for fname in ("model.pt2", "model.pt", "model.ckpt"):
        msg = _refused(tmp_path, workspace, lambda f=fname: import_checkpoint(f, data, workspace=workspace),
                       "torch.export archive")
        assert "ONNX" in msg
    _refused(tmp_path, workspace, lambda: import_checkpoint("model.onnx", data, workspace=workspace),
             "renamed or corrupt")
    assert not marker.exists()


def test_hostile_torch_export_control_torch_export_load_runs_the_payload(tmp_path):
    """Control for the test above: torch.export.load itself executes the crafted archive's payload."""
    marker = tmp_path / "PWNED"
    data = _hostile_pt2(marker)
    try:
        torch.export.load(io.BytesIO(data))  # unsafe-on-purpose: shows why .pt2 is refused
    except Exception:  # noqa: BLE001 - the payload returns a file object, loading may fail afterwards
        pass
    assert marker.exists()


def _onnx_graph(**tensor_kw):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [0.0] * 6)
    for k, v in tensor_kw.items():
        if k == "external":
            w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 2])
            w.data_location = TensorProto.EXTERNAL
            w.external_data.add(key="location", value=v)
    node = helper.make_node(tensor_kw.get("op", "MatMul"), ["x", "W"], ["y"], domain=tensor_kw.get("domain", ""))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 2])], [w])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(tensor_kw["domain"], 1)]
                                              if tensor_kw.get("domain") else [])
    return onnx.helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_hostile_onnx_files_are_refused(tmp_path, workspace):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\x00" * 24)
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.onnx", _onnx_graph(external=str(outside)), workspace=workspace), "external file")
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.onnx", _onnx_graph(external="../../etc/passwd"), workspace=workspace), "external data is refused")
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.onnx", _onnx_graph(op="PyOp", domain="ai.onnx.contrib"), workspace=workspace), "custom domain")
    good = _onnx_graph()
    _refused(tmp_path, workspace, lambda: import_checkpoint("m.onnx", good[: len(good) // 2], workspace=workspace),
             "corrupt or truncated|no graph")
    _refused(tmp_path, workspace, lambda: import_checkpoint(
        "m.onnx", state_bytes_pt({"w": _WritesMarker(tmp_path / "PWNED")}), workspace=workspace),
        "renamed or corrupt")
    assert not (tmp_path / "PWNED").exists()


def test_imported_runs_round_trip_through_the_run_zip(workspace, tmp_path):
    """The Runs page's download of an imported run (with its model.onnx / data.npz) imports back unchanged;
    a zip whose data.npz or model.onnx was altered is refused."""
    from landscape_core.runs import export_zip, read_meta

    torch.manual_seed(0)
    original = TinyTransformer().eval()
    g = np.random.default_rng(1)
    buf = io.BytesIO()
    np.savez(buf, X=g.normal(size=(8, 5, 4)).astype(np.float32), y=g.integers(0, 3, 8))
    rep = import_checkpoint("t.onnx", onnx_bytes(original, torch.zeros(2, 5, 4)), workspace=workspace,
                            user_data=buf.getvalue())
    z = export_zip(rep.path, tmp_path / "t.zip")
    back = import_checkpoint("t.zip", z, workspace=workspace, name="again")
    assert back.architecture == "onnx" and back.weights_hash == rep.weights_hash
    assert read_meta(back.path)["dataset"]["sha256"] == rep.dataset["sha256"]
    a, b = load_run(rep.path), load_run(back.path)
    assert torch.equal(a.train_data[0], b.train_data[0])
    with torch.no_grad():
        assert torch.equal(a.model(a.test_data[0]), b.model(b.test_data[0]))
    src = zipfile.ZipFile(z)
    for victim in ("data.npz", "model.onnx"):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                blob = src.read(info.filename)
                if info.filename == victim:
                    blob = blob[:-40] + bytes(40) if victim == "model.onnx" else _image_npz(8, (5, 4), 3, seed=9)
                dst.writestr(info.filename, blob)  # (writestr(info, ...) would rewrite src's entry metadata)
        with pytest.raises(UploadError, match="SHA-256|corrupt|not valid"):
            import_checkpoint("bad.zip", out.getvalue(), workspace=workspace)


def test_old_checkpoint_without_num_batches_tracked_and_explicit_spec_with_own_data(workspace):
    """Checkpoints from before PyTorch 0.4.1 (like the first public option-A ResNet-20 files) have no
    ``num_batches_tracked``: it is filled with 0 (unused in eval mode) and the report says so."""
    m = randomise_batchnorm(_seeded(lambda: CifarResNet20(option="A", head="linear"), 8))
    sd = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    rep = import_checkpoint("old.th", state_bytes_pt(sd), workspace=workspace, user_data=_image_npz())
    assert sum("num_batches_tracked absent" in n for n in rep.notes) == 19
    run = load_run(rep.path)
    X = run.train_data[0]
    with torch.no_grad():
        assert (run.model(X) - m(X)).abs().max().item() <= 1e-5
    # an explicit architecture with the user's own data: classes from the weights' head
    spec = {"name": "resnet20", "kwargs": {"width": 4, "shortcut": "zeropad"}}
    rep2 = import_checkpoint("old.th", state_bytes_pt(sd), workspace=workspace, user_data=_image_npz(),
                             model_spec=spec)
    assert rep2.model_spec["kwargs"]["num_classes"] == 10 and rep2.weights_hash == rep.weights_hash


def test_onnx_unknown_operator_and_fixed_batch_size_are_one_line(tmp_path, workspace):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Hardmax", ["x"], ["y"])  # a standard operator onnx2torch has no converter for
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])])
    data = onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    msg = _refused(tmp_path, workspace, lambda: import_checkpoint("h.onnx", data, workspace=workspace),
                   "operator Hardmax .* is not supported")
    assert "dynamo=False, opset_version=17" in msg
    # exported without dynamic_axes: the graph is fixed to its example batch of 2
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_seeded(TinyTransformer), (torch.zeros(2, 5, 4),), buf, dynamo=False, opset_version=17)
    npz = io.BytesIO()
    np.savez(npz, X=np.zeros((6, 5, 4), np.float32), y=np.zeros(6, np.int64))
    _refused(tmp_path, workspace, lambda: import_checkpoint("fixed.onnx", buf.getvalue(), workspace=workspace,
                                                           user_data=npz.getvalue()),
             "does not run on a batch of 3 inputs of shape \\(5, 4\\).*dynamic batch size")

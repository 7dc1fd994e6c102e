"""The file contract (tubevit.io): every writer's file into every reader with identical logits,
older files still loading, the checksum, and the one-line refusals (pickles, malformed headers,
a config far larger than its tensors, a newer format, another kind of file)."""

from __future__ import annotations

import argparse
import json
import struct

import pytest
import torch

import tubevit
from tubevit.configs import default_config
from tubevit.convert.image_vit import load_pretrained
from tubevit.convert.scaling import load_small
from tubevit.engine import checkpoint as ckpt_io
from tubevit.engine.export import export_checkpoint
from tubevit.evaluate.loading import load_model
from tubevit.io import ModelFileError, read_model_file

CLASSES = {"video": ["a", "b", "c"], "image": ["x", "y", "z", "w"]}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tubevit.create_model("tubevit_tiny", depth=2, tubes="two_tube", num_classes={"video": 3, "image": 4}).eval()
    with torch.no_grad():  # make every tensor distinctive (heads included)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(2, 3, 8, 32, 32)


def _train_state(model, *, v1=False) -> dict:
    cfg = default_config("tubevit_tiny")
    cfg.model = model.cfg
    cfg.data.frames, cfg.data.size = 8, 32
    state = {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "config": cfg.to_dict(),
             "class_names": CLASSES, "step": 5, "epoch": 1.0, "optimizer": {}, "best_top1": -1.0}
    if v1:
        state["format"] = "tubevit-checkpoint/1"  # what version 1 wrote: no kind, no checksum
    return state


def _v1_export(model, path):
    """A `tubevit export` file of version 1: model_config + the training config under "config"."""
    from safetensors.torch import save_file

    state = _train_state(model)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={
        "format": "tubevit-checkpoint/1", "model_config": json.dumps(model.cfg.to_dict()),
        "class_names": json.dumps(CLASSES), "config": json.dumps(state["config"]), "step": "5"})
    return path


WRITERS = {
    "training checkpoint": lambda m, d: ckpt_io.save_checkpoint(_train_state(m), d / "last.pt"),
    "export .safetensors": lambda m, d: export_checkpoint(
        ckpt_io.save_checkpoint(_train_state(m), d / "c.pt"), d / "w.safetensors")[0],
    "export folder": lambda m, d: export_checkpoint(ckpt_io.save_checkpoint(_train_state(m), d / "c.pt"), d / "exp")[0],
    "save_pretrained folder": lambda m, d: m.save_pretrained(d / "folder"),
    "save_pretrained .safetensors": lambda m, d: m.save_pretrained(d / "m.safetensors"),
    "v1 checkpoint": lambda m, d: ckpt_io.atomic_save(_train_state(m, v1=True), d / "old.pt"),
    "v1 export": lambda m, d: _v1_export(m, d / "old.safetensors"),
}


def _fresh_like(model):
    torch.manual_seed(123)
    return tubevit.create_model("tubevit_tiny", depth=2, tubes="two_tube", num_classes={"video": 3, "image": 4})


READERS = {
    "from_pretrained": lambda p, m: tubevit.from_pretrained(p),
    "create_model(pretrained=)": lambda p, m: tubevit.create_model(
        "tubevit_tiny", depth=2, tubes="two_tube", num_classes={"video": 3, "image": 4}, pretrained=str(p)).eval(),
    "eval/predict --checkpoint": lambda p, m: load_model(p).model,
    "--init-from": lambda p, m: (lambda f: (load_pretrained(f, str(p)), f.eval())[1])(_fresh_like(m)),
    "--scale-from": lambda p, m: load_small(str(p)).eval(),
    "re-export": lambda p, m: tubevit.from_pretrained(export_checkpoint(p, p.parent / "again.safetensors")[0]),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_file_kind_into_every_reader_gives_identical_logits(model, x, tmp_path, writer):
    path = WRITERS[writer](model, tmp_path)
    with torch.no_grad():
        want = {h: model(x, head=h) for h in model.head_names}
    for name, read in READERS.items():
        got = read(path, model)
        with torch.no_grad():
            for h in model.head_names:
                assert torch.equal(got(x, head=h), want[h]), f"{writer} -> {name}, head {h}"
    # Class names and clip settings travel with the weights (older files: from their training config).
    loaded = tubevit.from_pretrained(path)
    assert loaded.class_names["video"] == CLASSES["video"] if "save_pretrained" not in writer else True
    assert loaded.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)


def test_pretrained_cfg_and_class_names_round_trip(model, tmp_path):
    m = tubevit.from_pretrained(ckpt_io.save_checkpoint(_train_state(model), tmp_path / "c.pt"))
    cfg = m.pretrained_cfg
    assert cfg["num_frames"] == 8 and cfg["input_size"] == (3, 32, 32) and cfg["label_names"] == CLASSES
    assert not m.training
    m.save_pretrained(tmp_path / "f")
    back = tubevit.from_pretrained(tmp_path / "f")
    assert back.class_names == CLASSES and back.pretrained_cfg["num_frames"] == 8
    config = json.loads((tmp_path / "f" / "config.json").read_text())
    assert config["model_type"] == "tubevit" and config["format"] == "tubevit/2"
    assert config["checksum"].startswith("sha256:")


def test_checksum_refuses_changed_tensor_data(model, tmp_path):
    # A training checkpoint whose weights were changed after writing.
    path = ckpt_io.save_checkpoint(_train_state(model), tmp_path / "c.pt")
    ck = torch.load(path, weights_only=True)
    ck["model"]["norm.weight"][0] += 1e-3
    torch.save(ck, path)
    with pytest.raises(ModelFileError, match="does not match the checksum"):
        tubevit.from_pretrained(path)
    # One flipped byte in the last tensor of a .safetensors file.
    st = model.save_pretrained(tmp_path / "m.safetensors")
    data = bytearray(st.read_bytes())
    data[-3] ^= 0x40
    st.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the checksum"):
        load_model(st)


def test_oversized_config_is_refused_before_anything_is_built(model, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    path = model.save_pretrained(tmp_path / "m.safetensors")
    meta = read_model_file(path, reader="test").meta.to_strings()
    meta["model_config"] = json.dumps({**model.cfg.to_dict(), "width": 8190, "depth": 4000, "num_heads": 6,
                                       "mlp_dim": 32760, "pos_zero_fill": True})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    built = []
    real_init = tubevit.TubeViT.__init__
    monkeypatch.setattr(tubevit.TubeViT, "__init__", lambda self, cfg: (built.append(cfg), real_init(self, cfg))[1])
    with pytest.raises(ModelFileError, match="depth 4000, width 8190, but its tensors are of depth 2, width 192"):
        tubevit.from_pretrained(path)
    assert built == []  # not even on the meta device


def test_tensors_of_another_shape_than_the_config_are_named(model, tmp_path):
    from safetensors.torch import save_file

    path = model.save_pretrained(tmp_path / "m.safetensors")
    meta = read_model_file(path, reader="test").meta.to_strings()
    meta["model_config"] = json.dumps({**model.cfg.to_dict(), "mlp_dim": 384})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    with pytest.raises(ModelFileError, match=r"blocks.0.mlp.fc1.weight \[768, 192\] vs \[384, 192\]"):
        tubevit.from_pretrained(path)


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def test_pickle_files_are_refused_in_one_line_by_every_reader(model, tmp_path):
    pick = tmp_path / "vit.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=1)}, pick)
    calls = {
        "tubevit.from_pretrained": lambda: tubevit.from_pretrained(pick),
        "create_model(pretrained=)": lambda: tubevit.create_model("tubevit_tiny", depth=2, pretrained=str(pick)),
        "tubevit convert": lambda: __import__("tubevit.convert.image_vit", fromlist=["x"]).convert_checkpoint(
            pick, tmp_path / "o.safetensors"),
        "--scale-from": lambda: load_small(str(pick), reader="tubevit train --scale-from"),
        "--init-from": lambda: load_pretrained(_fresh_like(model), str(pick), reader="tubevit train --init-from"),
    }
    for reader, call in calls.items():
        with pytest.raises(ModelFileError) as err:
            call()
        msg = _one_line(err)
        assert "argparse.Namespace" in msg and "weights_only" in msg and reader in msg, msg
    assert not (tmp_path / "o.safetensors").exists()


def test_malformed_safetensors_header_is_one_line(model, tmp_path):
    good = model.save_pretrained(tmp_path / "m.safetensors").read_bytes()
    n = struct.unpack("<Q", good[:8])[0]
    cases = {
        "huge length": struct.pack("<Q", 10**12) + good[8:],
        "not json": good[:8] + b"{" * n + good[8 + n:],
        "truncated": good[: len(good) // 2],
        "tiny": b"abc",
    }
    for name, data in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        p.write_bytes(data)
        with pytest.raises(ModelFileError, match="not a valid .safetensors file") as err:
            tubevit.from_pretrained(p)
        assert str(p) in _one_line(err), name


def test_other_kinds_versions_and_garbage_name_the_file_and_the_call(model, tmp_path):
    # A newer format.
    path = model.save_pretrained(tmp_path / "m.safetensors")
    from safetensors.torch import save_file

    meta = read_model_file(path, reader="t").meta.to_strings()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={**meta, "format": "tubevit/9"})
    with pytest.raises(ModelFileError, match="newer tubevit .*tubevit/9.*upgrade"):
        tubevit.from_pretrained(path)
    # An image ViT into from_pretrained: names what it is and the call that reads it.
    save_file({"patch_embed.proj.weight": torch.zeros(192, 3, 16, 16)}, str(tmp_path / "vit.safetensors"))
    with pytest.raises(ModelFileError, match=r"image-ViT checkpoint.*create_model\(NAME, pretrained=PATH"):
        tubevit.from_pretrained(tmp_path / "vit.safetensors")
    # A training checkpoint is needed to resume; an export is refused by name.
    w = model.save_pretrained(tmp_path / "w.safetensors")
    with pytest.raises(ModelFileError, match="tubevit model weights, not a training checkpoint"):
        ckpt_io.load_checkpoint(w)
    (tmp_path / "g.pt").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="cannot read .*g.pt .given to tubevit.from_pretrained.: not a torch"):
        tubevit.from_pretrained(tmp_path / "g.pt")


def test_resume_with_another_architecture_names_what_differs(model):
    state = _train_state(model)
    with pytest.raises(ValueError, match=r"width 192 vs 384, depth 2 vs 4"):
        ckpt_io.check_architecture(state, model.cfg.replace(depth=4, width=384, num_heads=6, mlp_dim=1536), "last.pt")
    ckpt_io.check_architecture(state, model.cfg.replace(drop_path=0.3), "last.pt")  # not architecture


def test_timm_surface(model):
    m = tubevit.create_model("tubevit_tiny", depth=1, num_classes={"k400": 5})
    assert m.num_features == 192 and m.get_classifier() is m.heads["k400"]
    m.reset_classifier(7)
    assert m.get_classifier().out_features == 7 and m.cfg.num_classes == {"k400": 7}
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match="forward_pooled"):
        m.reset_classifier(0)
    assert m.pretrained_cfg["mean"] == (0.485, 0.456, 0.406) and m.pretrained_cfg["classifier"] == ["heads.k400"]


def test_the_short_video_policy_travels_with_the_weights(model, tmp_path):
    # data.short is a clip setting the weights were trained with: a folder or .safetensors made from
    # the checkpoint (no training config in a save_pretrained folder) must still say "fit".
    from tubevit.io.schema import Preprocessing

    state = _train_state(model)
    state["config"]["data"]["short"] = "fit"
    ckpt = ckpt_io.save_checkpoint(state, tmp_path / "c.pt")
    tubevit.from_pretrained(ckpt).save_pretrained(tmp_path / "folder")
    for path in (ckpt, export_checkpoint(ckpt, tmp_path / "w.safetensors")[0], tmp_path / "folder"):
        assert load_model(path).preprocessing.short == "fit", path
    assert load_model(ckpt_io.save_checkpoint(_train_state(model), tmp_path / "d.pt")).preprocessing.short == "loop"
    with pytest.raises(ModelFileError, match="short 'wrap' is not one of"):
        Preprocessing(short="wrap")

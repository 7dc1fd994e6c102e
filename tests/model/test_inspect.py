"""Cost accounting: counted FLOPs equal the closed form; `tubevit inspect` reports the paper geometry."""

import json

import pytest

import tubevit
from tubevit.cli import main
from tubevit.model.flops import analytic_flops, count_flops
from tubevit.report import inspect_model


@pytest.mark.parametrize("tokenizer", ["multi", "s2d", "interpolated"])
@pytest.mark.parametrize("shape", [(32, 224, 224), (21, 97, 130), (224, 160)])
def test_counted_flops_equal_closed_form(tokenizer, shape):
    model = tubevit.create_model("tubevit_tiny", num_classes=10, tokenizer=tokenizer, device="meta")
    counted = count_flops(model, (3, *shape))
    assert counted == analytic_flops(model.cfg, model.token_layout(shape), 10)


def test_inspect_base_matches_paper_geometry():
    r = inspect_model("tubevit_base", frames=32, size=224)
    assert r["tokens"] == 539
    assert [t["tokens"] for t in r["tubes"]] == [98, 147, 98, 196]
    assert r["params_backbone"] == 85_056_000
    assert 104.0 < r["gflops"] < 105.0  # 2 x MACs on 539 tokens; the paper's convention gives ~72
    assert r["dense_tokens"] == 3136 and r["dense_gflops"] > 8 * r["gflops"]


def test_inspect_cli_json_and_plot(tmp_path, capsys):
    png = tmp_path / "tubes.png"
    assert main(["inspect", "--model", "tubevit_tiny", "--frames", "64", "--size", "224", "--json", "--plot", str(png)]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ["tokens", "tubes", "params", "params_backbone", "gflops", "dense_tokens", "dense_gflops"]:
        assert key in r
    assert r["tokens"] == 1176
    assert set(r["tubes"][0]) >= {"kernel", "stride", "offset", "grid", "tokens"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_cli_reports_too_small_input(capsys):
    assert main(["inspect", "--model", "tubevit_tiny", "--frames", "8"]) == 2
    assert "needs at least 20x224x224" in capsys.readouterr().err

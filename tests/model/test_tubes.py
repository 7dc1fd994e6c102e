"""Tube geometry against hand-computed values (paper §4.1, Table 12)."""

import pytest

from tubevit.model.tubes import (TubeLayout, TubeSpec, axis_count, check_fits, get_tube_set, image_tube_index,
                                 tube_centres, tube_grid)


def test_paper_set_gives_539_tokens_on_32x224x224():
    layout = TubeLayout((32, 224, 224), get_tube_set("paper"))
    # floor((D - offset - k) / stride) + 1 per axis, by hand:
    # tube1 t: (32-0-8)//16+1 = 2, h: (224-0-8)//32+1 = 7
    # tube2 t: (32-4-16)//6+1 = 3, h: (224-8-4)//32+1 = 7
    # tube3 t: (32-0-4)//16+1 = 2, h: (224-16-12)//32+1 = 7
    # tube4 t: (32-0-1)//32+1 = 1, h: (224-0-16)//16+1 = 14
    assert layout.grids == ((2, 7, 7), (3, 7, 7), (2, 7, 7), (1, 14, 14))
    assert layout.counts == (98, 147, 98, 196)
    assert layout.total == 539


def test_paper_set_on_64_frames_gives_1176_tokens():
    # Kinetics is trained with 64 frames (Table 10): 4*49 + 8*49 + 4*49 + 2*196.
    assert TubeLayout((64, 224, 224), get_tube_set("paper")).total == 196 + 392 + 196 + 392 == 1176


def test_two_tube_and_image2d_sets():
    layout = TubeLayout((32, 224, 224), get_tube_set("two_tube"))
    assert layout.counts == (2 * 14 * 14, 2 * 14 * 14)  # the 2D kernel on every 16th frame: 392
    assert TubeLayout((32, 224, 224), get_tube_set("image2d")).total == 392
    assert TubeLayout((1, 224, 224), get_tube_set("image2d")).total == 196  # an image
    assert TubeLayout((32, 224, 224), get_tube_set("dense")).total == 16 * 14 * 14


@pytest.mark.parametrize("size,k,s,o,expected", [(32, 8, 16, 0, 2), (32, 16, 6, 4, 3), (19, 16, 6, 4, 0),
                                                  (20, 16, 6, 4, 1), (224, 12, 32, 16, 7), (1, 1, 32, 0, 1)])
def test_axis_count(size, k, s, o, expected):
    assert axis_count(size, k, s, o) == expected


def test_centres_account_for_stride_offset_and_kernel():
    tube2 = get_tube_set("paper")[1]
    plain = tube2.without_s2d()
    c = tube_centres(plain, (32, 224, 224))
    assert len(c) == 147
    # first token: start (4, 8, 8), kernel (16, 4, 4): centre start + (k-1)/2
    assert c[0] == (4 + 7.5, 8 + 1.5, 8 + 1.5)
    # token (t=2, h=1, w=3): start (4+12, 8+32, 8+96)
    assert c[2 * 49 + 1 * 7 + 3] == (16 + 7.5, 40 + 1.5, 104 + 1.5)
    # with x4 spatial space-to-depth (2x2 over h, w) a token spans 4 + 16 = 20 pixels
    assert tube2.effective_kernel == (16, 20, 20)
    assert tube_centres(tube2, (32, 224, 224))[0] == (4 + 7.5, 8 + 9.5, 8 + 9.5)


def test_too_small_input_names_tube_and_minimum():
    with pytest.raises(ValueError, match=r"tube 1 \(tube2_16x4x4.*at least 20x224x224"):
        check_fits(get_tube_set("paper"), (19, 224, 224))
    check_fits(get_tube_set("paper"), (20, 224, 224))
    # tube3 (offset 16, kernel 12) is the first that needs more than 20 rows: 28
    with pytest.raises(ValueError, match=r"tube 2 \(tube3_4x12x12.*needs at least 32x28x224"):
        check_fits(get_tube_set("paper"), (32, 20, 224))


def test_spec_validation_and_user_sets():
    with pytest.raises(ValueError, match="must divide the stride"):
        TubeSpec((8, 8, 8), (16, 32, 32), s2d=(3, 1, 1))
    with pytest.raises(ValueError, match="unknown tube keys"):
        get_tube_set([{"kernel": [1, 16, 16], "stride": 16, "padding": 1}])
    with pytest.raises(ValueError, match="unknown tube set"):
        get_tube_set("nope")
    specs = get_tube_set([{"kernel": [4, 8, 8], "stride": [4, 8, 8]}, {"kernel": [1, 8, 8], "stride": [8, 8, 8]}])
    assert image_tube_index(specs) == 1
    assert tube_grid(specs[0], (16, 32, 32)) == (4, 4, 4)
    assert TubeSpec.from_dict(specs[0].to_dict()) == specs[0]

"""Eval numbers a list's classes by the checkpoint's names: a training classes file in unsorted
order gives the same labels as the trainer used; a list lacking classes is accepted."""

from __future__ import annotations

import pytest

from tubevit.data.datasets import read_annotations
from tubevit.evaluate.commands import check_list_fits_head, to_checkpoint_labels


def test_sorted_list_names_are_renumbered_by_the_checkpoints_order(tmp_path):
    csv = tmp_path / "val.csv"
    csv.write_text("path,label\na.mp4,zebra\nb.mp4,ant\nc.mp4,moth\n")
    samples, names = read_annotations(csv, tmp_path)  # sorted: ant 0, moth 1, zebra 2
    ckpt = ["zebra", "moth", "ant"]  # the trainer's classes file order
    got = to_checkpoint_labels(samples, names, ckpt, list_path=csv, head="video")
    assert [ckpt[lab] for _, lab in got] == ["zebra", "ant", "moth"]  # each video keeps its true class
    assert check_list_fits_head(got, names, ckpt, list_path=csv, head="video") == ckpt


def test_a_list_lacking_some_classes_is_accepted(tmp_path):
    csv = tmp_path / "val.csv"
    csv.write_text("path,label\na.mp4,moth\n")
    samples, names = read_annotations(csv, tmp_path)
    ckpt = ["zebra", "moth", "ant"]
    got = to_checkpoint_labels(samples, names, ckpt, list_path=csv, head="video")
    assert got == [("a.mp4", 1)]
    assert check_list_fits_head(got, names, ckpt, list_path=csv, head="video") == ckpt


def test_a_name_the_checkpoint_lacks_is_an_error_naming_it(tmp_path):
    csv = tmp_path / "val.csv"
    csv.write_text("path,label\na.mp4,moth\nb.mp4,wasp\n")
    samples, names = read_annotations(csv, tmp_path)
    with pytest.raises(ValueError, match=r"class name\(s\) \['wasp'\] that head 'video' of the checkpoint"):
        to_checkpoint_labels(samples, names, ["zebra", "moth", "ant"], list_path=csv, head="video")


def test_index_labels_are_left_as_they_are(tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("a.mp4 2\nb.mp4 0\n")
    samples, names = read_annotations(lst, tmp_path)
    assert to_checkpoint_labels(samples, names, ["x", "y", "z"], list_path=lst, head="video") == samples

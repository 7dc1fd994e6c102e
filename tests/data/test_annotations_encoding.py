"""Annotation and classes files: a UTF-8 BOM is dropped, a label missing from a given classes file
is an error naming the line, duplicate rows are reported once."""

from __future__ import annotations

import logging

import pytest

from tubevit.data.datasets import read_annotations, read_classes


def test_kinetics_csv_with_a_bom_keeps_its_label_column(tmp_path):
    csv = tmp_path / "val.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nzumba,abc,10,20,val\nyoga,def,0,10,val\n",
                   encoding="utf-8-sig")
    samples, names = read_annotations(csv, tmp_path)
    assert names == ["yoga", "zumba"]
    assert [lab for _, lab in samples] == [1, 0]


def test_path_label_csv_and_classes_file_with_a_bom(tmp_path):
    (tmp_path / "classes.txt").write_text("b\na\n", encoding="utf-8-sig")
    assert read_classes(tmp_path / "classes.txt") == ["b", "a"]
    csv = tmp_path / "train.csv"
    csv.write_text("path,label\nx.mp4,a\ny.mp4,b\n", encoding="utf-8-sig")
    samples, names = read_annotations(csv, tmp_path, tmp_path / "classes.txt")
    assert names == ["b", "a"] and samples == [("x.mp4", 1), ("y.mp4", 0)]
    lst = tmp_path / "train.txt"
    lst.write_text("x.mp4 1\n", encoding="utf-8-sig")
    assert read_annotations(lst, tmp_path)[0] == [("x.mp4", 1)]


@pytest.mark.parametrize("row", ["z.mp4,c", "z.mp4,7"])
def test_a_label_absent_from_the_classes_file_is_an_error_naming_the_line(tmp_path, row):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    csv = tmp_path / "train.csv"
    csv.write_text(f"path,label\nx.mp4,a\n{row}\n")
    with pytest.raises(ValueError, match=rf"train.csv:3: label '{row[6:]}' is not in the classes file"):
        read_annotations(csv, tmp_path, tmp_path / "classes.txt")


def test_kinetics_label_absent_from_the_classes_file_names_the_line(tmp_path):
    (tmp_path / "classes.txt").write_text("yoga\n")
    csv = tmp_path / "val.csv"
    csv.write_text("label,youtube_id,time_start,time_end\nyoga,a,0,10\nzumba,b,0,10\n")
    with pytest.raises(ValueError, match=r"val.csv:3: label 'zumba' is not in the classes file"):
        read_annotations(csv, tmp_path, tmp_path / "classes.txt")


def test_duplicate_rows_are_reported_once(tmp_path, caplog):
    lst = tmp_path / "train.txt"
    lst.write_text("x.mp4 0\ny.mp4 1\nx.mp4 0\nx.mp4 0\ny.mp4 1\n")
    with caplog.at_level(logging.WARNING, logger="tubevit.data.datasets"):
        samples, _ = read_annotations(lst, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(warnings) == 1 and "3 duplicate row(s)" in warnings[0] and "x.mp4, y.mp4" in warnings[0]
    assert len(samples) == 5
